import cadquery as cq

# Round sensor housing: cylinder cup with a flange of three mounting ears.
cup = cq.Workplane("XY").circle(30).extrude(25).faces(">Z").shell(-2)
ears = (
    cq.Workplane("XY")
    .polarArray(36, 90, 360, 3)
    .slot2D(22, 12, angle=0)
    .extrude(4)
)
ring = cq.Workplane("XY").circle(34).extrude(4)
holes = cq.Workplane("XY").polarArray(40, 90, 360, 3).circle(2.2).extrude(4)
result = cup.union(ring).union(ears).cut(holes)
