import cadquery as cq

# Hopper: a square mouth lofted down to a small square outlet, walls 2 mm.
outer = cq.Workplane("XY").rect(20, 20).workplane(offset=50).rect(90, 90).loft()
inner = cq.Workplane("XY").rect(16, 16).workplane(offset=50).rect(86, 86).loft()
result = outer.cut(inner).faces(">Z").edges("not(<X or >X or <Y or >Y)").chamfer(0.5)
