import cadquery as cq

# 90 degree corner connector with one central gusset and counterbored holes.
leg = 40
bracket = (
    cq.Workplane("XZ")
    .polyline([(0, 0), (leg, 0), (leg, 6), (6, 6), (6, leg), (0, leg)])
    .close()
    .extrude(15, both=True)
)
gusset = cq.Workplane("XZ").polyline([(6, 6), (32, 6), (6, 32)]).close().extrude(2.5, both=True)
result = (
    bracket.union(gusset)
    .faces("<Z").workplane(centerOption="CenterOfBoundBox")
    .pushPoints([(-5, 8), (-5, -8)]).cboreHole(4.5, 8, 3)
)
