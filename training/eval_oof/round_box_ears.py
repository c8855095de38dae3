import cadquery as cq

# Junction box: round body with two tabbed ears and a cable gland boss on the side.
body = cq.Workplane("XY").circle(35).extrude(30).faces(">Z").shell(-2.5)
ears = cq.Workplane("XY").slot2D(100, 14).extrude(3)
gland = cq.Workplane("YZ").workplane(offset=30).center(0, 15).circle(8).extrude(8)
box = body.union(ears).union(gland)
box = box.cut(cq.Workplane("YZ").center(0, 15).circle(5).extrude(40))
result = box.faces("<Z").workplane().pushPoints([(-44, 0), (44, 0)]).hole(4.5)
