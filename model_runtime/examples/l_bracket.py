import cadquery as cq

result = (
    cq.Workplane("XZ")
    .moveTo(0, 0)
    .lineTo(25, 0)
    .lineTo(25, 3)
    .lineTo(7.5, 3)
    .radiusArc((3, 7.5), 4.5)
    .lineTo(3, 100)
    .lineTo(0, 100)
    .close()
    .extrude(27.5, both=True)
    .faces("<Z")
    .workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(-3.8, 13.8), (-3.8, -13.8)])
    .hole(3.4)
)
