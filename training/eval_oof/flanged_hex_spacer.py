import cadquery as cq

# Hex spacer with a round flange and a chamfered through hole.
hex_body = cq.Workplane("XY").polygon(6, 14).extrude(25)
flange = cq.Workplane("XY").circle(10).extrude(3)
result = hex_body.union(flange).faces(">Z").workplane().cskHole(5.5, 7, 90)
