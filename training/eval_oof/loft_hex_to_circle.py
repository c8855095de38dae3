import cadquery as cq

# Wrench adapter: hexagonal base lofted into a round shank, with a square drive hole.
base = cq.Workplane("XY").polygon(6, 40).extrude(12)
neck = cq.Workplane("XY", origin=(0, 0, 12)).polygon(6, 40).workplane(offset=20).circle(12).loft()
shank = cq.Workplane("XY", origin=(0, 0, 32)).circle(12).extrude(15)
result = base.union(neck).union(shank).faces("<Z").workplane().rect(12.7, 12.7).cutBlind(-10)
