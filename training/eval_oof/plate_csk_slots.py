import cadquery as cq

# Adjustable mounting plate: two long slots, four countersunk holes, chamfered outline.
plate = cq.Workplane("XY").box(140, 60, 6).edges("|Z").chamfer(8)
plate = plate.faces(">Z").workplane().pushPoints([(-35, 0), (35, 0)]).slot2D(40, 8).cutThruAll()
result = plate.faces(">Z").workplane().rect(120, 40, forConstruction=True).vertices().cskHole(4.5, 9, 90)
