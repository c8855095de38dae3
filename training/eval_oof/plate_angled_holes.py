import cadquery as cq

# Jig plate: three holes drilled at 30 degrees through a chamfered block.
block = cq.Workplane("XY").box(80, 40, 20).edges(">Z and |X").chamfer(4)
for x in (-25, 0, 25):
    drill = (
        cq.Workplane("XY")
        .transformed(offset=(x, 0, 0), rotate=(30, 0, 0))
        .circle(3)
        .extrude(60, both=True)
    )
    block = block.cut(drill)
result = block
