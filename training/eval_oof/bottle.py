import cadquery as cq

# Small bottle: revolved body with shoulder and neck, hollow with 1.5 mm walls, thread ring.
profile = [(0, 0), (25, 0), (25, 60), (14, 75), (10, 78), (10, 92), (0, 92)]
body = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
body = body.faces(">Z").shell(-1.5)
ring = cq.Workplane("XY", origin=(0, 0, 82)).circle(11.5).circle(9).extrude(3)
result = body.union(ring)
