import cadquery as cq

# Coat hook: back plate with two screw holes, curved arm (arcs) extruded 12 mm wide.
arm = (
    cq.Workplane("XZ")
    .moveTo(0, 0)
    .lineTo(5, 0)
    .lineTo(5, 10)
    .threePointArc((25, 25), (40, 45))
    .lineTo(35, 47)
    .threePointArc((21, 30), (5, 20))
    .lineTo(5, 60)
    .lineTo(0, 60)
    .close()
    .extrude(6, both=True)
)
result = (
    arm.faces("<X")
    .workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(0, 20), (0, -5)])
    .cskHole(4, 8, 90)
)
