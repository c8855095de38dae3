import cadquery as cq

# V-belt pulley: one V groove, hub on one side, bore with keyway.
profile = [(6, 0), (40, 0), (40, 2), (33, 9), (33, 11), (40, 18), (40, 20), (14, 20), (14, 32), (6, 32)]
pulley = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
key = cq.Workplane("XY").center(7, 0).rect(4, 4).extrude(32)
result = pulley.cut(key)
