import cadquery as cq

# Equal angle 40x40x4 with a 5 mm root radius, slotted holes in one leg, 200 mm long.
section = (
    cq.Workplane("YZ")
    .moveTo(0, 0)
    .lineTo(40, 0)
    .lineTo(40, 4)
    .lineTo(9, 4)
    .radiusArc((4, 9), 5)
    .lineTo(4, 40)
    .lineTo(0, 40)
    .close()
)
angle = section.extrude(200)
result = (
    angle.faces("<Z")
    .workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(-60, -5), (0, -5), (60, -5)])
    .slot2D(16, 6.5)
    .cutThruAll()
)
