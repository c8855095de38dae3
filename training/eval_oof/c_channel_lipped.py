import cadquery as cq

# Lipped C channel (cold-formed steel section), 150 mm long.
pts = [(0, 0), (40, 0), (40, 12), (38, 12), (38, 2), (2, 2), (2, 58), (38, 58), (38, 48),
       (40, 48), (40, 60), (0, 60)]
result = cq.Workplane("XZ").polyline(pts).close().extrude(150)
