import cadquery as cq

# Split shaft collar: ring, radial slit, tangential clamp screw.
collar = cq.Workplane("XY").circle(20).circle(10).extrude(12)
slit = cq.Workplane("XY").center(15, 0).rect(12, 1.5).extrude(12)
screw = cq.Workplane("XZ").center(14, 6).circle(1.7).extrude(25, both=True)
head = cq.Workplane("XZ", origin=(0, -8, 0)).center(14, 6).circle(3).extrude(15)
result = collar.cut(slit).cut(screw).cut(head)
