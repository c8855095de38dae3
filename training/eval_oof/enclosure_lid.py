import cadquery as cq

# Lid for a box: plate with rounded corners, an inner locating rim, four countersunk holes.
lid = cq.Workplane("XY").box(90, 60, 3).edges("|Z").fillet(6)
rim = (
    cq.Workplane("XY", origin=(0, 0, -1.5))
    .rect(83, 53)
    .rect(79, 49)
    .extrude(-4)
)
result = (
    lid.union(rim)
    .faces(">Z")
    .workplane()
    .rect(74, 44, forConstruction=True)
    .vertices()
    .cskHole(3.4, 6.5, 90)
)
