import cadquery as cq

# Instrument knob: cap, wide skirt, pointer line, set-screw hole in the side.
profile = [(0, 0), (20, 0), (20, 3), (13, 6), (13, 20), (11, 22), (0, 22)]
knob = cq.Workplane("XZ").polyline(profile).close().revolve(360, (0, 0, 0), (0, 1, 0))
knob = knob.faces(">Z").workplane().center(6, 0).rect(10, 1.5).cutBlind(-1)
bore = cq.Workplane("XY").circle(3).extrude(15)
set_screw = cq.Workplane("YZ").center(0, 9).circle(1.5).extrude(20)
result = knob.cut(bore).cut(set_screw)
