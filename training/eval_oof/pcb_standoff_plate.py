import cadquery as cq

# Carrier plate for a board: four hex standoffs with pilot holes, cable slot, mounting ears.
plate = cq.Workplane("XY").box(100, 70, 3, centered=(True, True, False))
standoffs = (
    cq.Workplane("XY", origin=(0, 0, 3))
    .rect(58, 49, forConstruction=True).vertices()
    .polygon(6, 7).extrude(8)
)
plate = plate.union(standoffs)
plate = plate.faces(">Z").workplane().rect(58, 49, forConstruction=True).vertices().hole(2.5, 9)
result = plate.faces(">Z[-2]").workplane().center(0, -28).slot2D(30, 6).cutThruAll()
