import cadquery as cq

# Base plate with a round boss and four counterbored holes (the kind a new user tried first).
plate = cq.Workplane("XY").box(100, 70, 10).edges("|Z").fillet(5)
plate = plate.faces(">Z").workplane().circle(18).extrude(12)
plate = plate.faces(">Z").workplane().hole(16)
result = (
    plate.faces("<Z").workplane()
    .rect(80, 50, forConstruction=True).vertices()
    .cboreHole(6.6, 11, 6.4)
)
