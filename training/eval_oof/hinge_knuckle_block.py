import cadquery as cq

# Hinge half: block with two knuckles and a pin hole.
plate = cq.Workplane("XY").box(60, 30, 5, centered=(True, False, False))
knuckle = cq.Workplane("YZ").circle(5).extrude(14).translate((0, 0, 5))
knuckles = knuckle.translate((-30, 0, 0)).union(knuckle.translate((16, 0, 0)))
result = (
    plate.union(knuckles)
    .cut(cq.Workplane("YZ").circle(2).extrude(35, both=True).translate((0, 0, 5)))
    .faces("<Z").workplane().pushPoints([(-18, -18), (18, -18)]).cskHole(3.4, 6.5, 90)
)
