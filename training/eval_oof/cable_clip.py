import cadquery as cq

# Cable clip: open ring on a screw tab.
ring = cq.Workplane("XY").circle(10).circle(7).extrude(8)
opening = cq.Workplane("XY").center(0, 9).rect(8, 8).extrude(8)
tab = cq.Workplane("XY").center(0, -12).rect(22, 6).extrude(8)
result = (
    ring.cut(opening).union(tab)
    .faces("<Y").workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(-7, 0), (7, 0)]).hole(3.2)
)
