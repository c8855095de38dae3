import cadquery as cq

# Pipe saddle: U-shaped cradle on a base with two holes.
base = cq.Workplane("XY").box(70, 30, 6, centered=(True, True, False))
saddle = cq.Workplane("XZ").rect(40, 28, centered=(True, False)).extrude(15, both=True).translate((0, 0, 6))
cradle = cq.Workplane("XZ").center(0, 34).circle(16).extrude(20, both=True)
result = (
    base.union(saddle).cut(cradle)
    .faces("<Z").workplane().pushPoints([(-27, 0), (27, 0)]).hole(6.6)
)
