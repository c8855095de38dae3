import cadquery as cq

result = (
    cq.Workplane("XY")
    .box(170, 150, 7)
    .edges("|Z")
    .chamfer(4)
    .faces(">Z")
    .workplane()
    .rarray(51.3, 134, 4, 2)
    .hole(4.5)
    .faces(">Z")
    .workplane()
    .hole(10)
)
