import cadquery as cq

# Flat air nozzle: round inlet lofted to a wide flat outlet.
outer = cq.Workplane("XY").circle(15).workplane(offset=60).rect(70, 8).loft()
inner = cq.Workplane("XY").circle(13).workplane(offset=60).rect(66, 4).loft()
collar = cq.Workplane("XY").circle(17).circle(13).extrude(-15)
result = outer.cut(inner).union(collar)
