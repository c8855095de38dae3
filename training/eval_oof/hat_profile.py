import cadquery as cq

# Hat (omega) profile rail.
t = 1.5
pts = [(-35, 0), (-15, 0), (-15, 25), (15, 25), (15, 0), (35, 0), (35, t), (15 + t, t),
       (15 + t, 25 + t), (-15 - t, 25 + t), (-15 - t, t), (-35, t)]
result = cq.Workplane("XZ").polyline(pts).close().extrude(-100)
