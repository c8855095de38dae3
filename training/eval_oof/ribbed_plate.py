import cadquery as cq

# Stiffened cover plate: thin plate with a rib grid on top and a perimeter rim.
plate = cq.Workplane("XY").box(120, 80, 3, centered=(True, True, False))
ribs = (
    cq.Workplane("XY", origin=(0, 0, 3))
    .rarray(30, 1, 3, 1).rect(2, 80)
    .extrude(10)
    .union(cq.Workplane("XY", origin=(0, 0, 3)).rarray(1, 40, 1, 2).rect(120, 2).extrude(10))
)
rim = cq.Workplane("XY", origin=(0, 0, 3)).rect(120, 80).rect(116, 76).extrude(10)
result = plate.union(ribs).union(rim).edges("|Z and (<X or >X)").fillet(1)
