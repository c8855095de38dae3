import cadquery as cq

# Spur gear, 24 trapezoid teeth, hub and bore with keyway, lightening holes.
teeth = 24
root, tip = 28, 32
body = cq.Workplane("XY").circle(root).extrude(8)
flank = [(root - 1, -2.2), (tip, -1.1), (tip, 1.1), (root - 1, 2.2)]
tooth = cq.Workplane("XY").polyline(flank).close().extrude(8)
for i in range(teeth):
    body = body.union(tooth.rotate((0, 0, 0), (0, 0, 1), 360 / teeth * i))
hub = cq.Workplane("XY").circle(12).extrude(14)
gear = body.union(hub).faces(">Z").workplane().hole(10)
result = gear.faces("<Z").workplane().polarArray(19, 0, 360, 4).hole(8)
