import cadquery as cq

# Shelf bracket: two legs, three triangular ribs, two holes in each leg.
base = cq.Workplane("XY").box(80, 60, 5, centered=(False, True, False))
wall = cq.Workplane("XY").box(5, 60, 80, centered=(False, True, False))
rib = (
    cq.Workplane("XZ")
    .polyline([(5, 5), (60, 5), (5, 60)])
    .close()
    .extrude(2, both=True)
)
ribs = rib.translate((0, -25, 0)).union(rib).union(rib.translate((0, 25, 0)))
result = (
    base.union(wall).union(ribs)
    .faces("<Z").workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(25, 14), (25, -14)]).hole(6)
    .faces("<X").workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(14, 20), (-14, 20)]).hole(6)
)
