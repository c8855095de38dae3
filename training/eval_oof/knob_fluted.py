import cadquery as cq

# Fluted control knob: cylinder with 12 round flutes, domed top edge, blind D-shaft bore.
knob = cq.Workplane("XY").circle(15).extrude(18)
flutes = cq.Workplane("XY").polarArray(15.5, 0, 360, 12).circle(2).extrude(18)
knob = knob.cut(flutes).faces(">Z").edges().fillet(1.2)
shaft = (
    cq.Workplane("XY")
    .circle(3.1)
    .extrude(12)
    .cut(cq.Workplane("XY").box(10, 10, 12, centered=(True, False, False)).translate((0, 1.6, 0)))
)
result = knob.cut(shaft)
