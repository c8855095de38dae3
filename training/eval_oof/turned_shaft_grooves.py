import cadquery as cq

# Stepped shaft with retaining-ring grooves and chamfered ends.
profile = [(0, 0), (6, 0), (6, 30), (5.3, 30), (5.3, 31.2), (6, 31.2), (6, 35), (9, 35), (9, 90),
           (8.2, 90), (8.2, 91.4), (9, 91.4), (9, 95), (6, 95), (6, 130), (0, 130)]
shaft = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
result = shaft.faces("<Z or >Z").edges().chamfer(0.8)
