import cadquery as cq

# NEMA 17 motor plate: 31 mm hole square, centre pilot bore, slotted base flange.
plate = cq.Workplane("XZ").rect(56, 56).extrude(5).translate((0, 0, 33))
plate = (
    plate.faces("<Y").workplane(centerOption="CenterOfBoundBox")
    .hole(22.5)
    .faces("<Y").workplane(centerOption="CenterOfBoundBox")
    .rect(31, 31, forConstruction=True).vertices().hole(3.4)
)
base = cq.Workplane("XY").box(56, 40, 5, centered=(True, False, False)).translate((0, -5, 0))
base = base.faces(">Z").workplane().pushPoints([(-18, 20), (18, 20)]).slot2D(14, 5.5, angle=90).cutThruAll()
result = plate.union(base)
