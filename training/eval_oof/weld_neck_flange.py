import cadquery as cq

# Weld-neck pipe flange: revolved hub, raised face, eight bolt holes.
profile = [(25, 0), (75, 0), (75, 16), (38, 16), (30, 50), (25, 50)]
flange = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
raised = cq.Workplane("XY").circle(50).circle(25).extrude(-2)
result = flange.union(raised).faces(">Z[-2]").workplane().polarArray(60, 0, 360, 8).hole(14)
