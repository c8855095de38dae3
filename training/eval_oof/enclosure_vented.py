import cadquery as cq

# Open-top tray with a row of ventilation slots in one side and a cable notch in the other.
tray = cq.Workplane("XY").box(120, 80, 40).faces(">Z").shell(-3)
vents = (
    cq.Workplane("XZ", origin=(0, 45, 0))
    .rarray(12, 1, 7, 1)
    .slot2D(22, 5, angle=90)
    .extrude(10)
)
notch = cq.Workplane("XY").box(20, 10, 14).translate((0, -40, 14))
result = tray.cut(vents).cut(notch)
