import cadquery as cq

# Rectangular hollow section 60x40x3 with rounded corners, 120 mm, one end mitred at 45 degrees.
tube = (
    cq.Workplane("XY")
    .sketch()
    .rect(60, 40)
    .vertices()
    .fillet(6)
    .finalize()
    .extrude(160)
)
tube = tube.faces(">Z").shell(-3)
miter = cq.Workplane("XY").box(200, 200, 200).rotate((0, 0, 0), (0, 1, 0), 45).translate((0, 0, 220))
result = tube.cut(miter)
