import cadquery as cq

# Breadboard plate: 5x3 grid of blind tapped holes, two dowel holes, rounded corners.
plate = cq.Workplane("XY").box(125, 75, 12).edges("|Z").fillet(10)
plate = plate.faces(">Z").workplane().rarray(25, 25, 5, 3).hole(5, 9)
result = plate.faces(">Z").workplane().pushPoints([(-55, 30), (55, -30)]).hole(6)
