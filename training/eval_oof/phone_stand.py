import cadquery as cq

# Phone stand: slanted back and front lip from one profile, extruded 70 mm, cable cut-out.
pts = [(0, 0), (80, 0), (80, 5), (62, 5), (62, 18), (57, 18), (57, 5), (40, 5), (10, 75), (4, 72), (30, 5),
       (0, 5)]
stand = cq.Workplane("XZ").polyline(pts).close().extrude(35, both=True)
result = stand.cut(cq.Workplane("XY").center(50, 0).rect(20, 14).extrude(5))
