import cadquery as cq

# Duct adapter: square flange, lofted transition to a round spigot, hollow.
flange = cq.Workplane("XY").rect(80, 80).extrude(5)
transition = (
    cq.Workplane("XY", origin=(0, 0, 5))
    .rect(60, 60)
    .workplane(offset=45)
    .circle(22)
    .loft()
)
spigot = cq.Workplane("XY", origin=(0, 0, 50)).circle(22).extrude(20)
outer = flange.union(transition).union(spigot)
bore = (
    cq.Workplane("XY")
    .rect(54, 54)
    .workplane(offset=50)
    .circle(19)
    .loft()
    .union(cq.Workplane("XY", origin=(0, 0, 50)).circle(19).extrude(20))
)
result = (
    outer.cut(bore)
    .faces("<Z")
    .workplane()
    .rect(68, 68, forConstruction=True)
    .vertices()
    .hole(5)
)
