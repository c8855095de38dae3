import cadquery as cq

# Five-lobe star knob with a hex pocket for an M8 nut.
lobes = cq.Workplane("XY").polarArray(14, 0, 360, 5).circle(8).extrude(14)
core = cq.Workplane("XY").circle(16).extrude(14)
knob = core.union(lobes).edges("|Z").fillet(2).faces(">Z").edges().fillet(1.5)
result = knob.faces("<Z").workplane().polygon(6, 15).cutBlind(-7).faces(">Z").workplane().hole(8.5)
