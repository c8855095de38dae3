import cadquery as cq

# Flanged bronze bushing with an oil groove and chamfers.
profile = [(8, 0), (16, 0), (16, 4), (11, 4), (11, 30), (8, 30)]
bushing = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
groove = cq.Workplane("XZ").center(8, 17).circle(1).revolve(360, (-8, 0, 0), (-8, 1, 0))
result = bushing.cut(groove).faces(">Z").edges().chamfer(0.6)
