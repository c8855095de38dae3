import cadquery as cq

# 20x20 aluminium T-slot profile (simplified): centre bore, four slots, 100 mm long.
profile = cq.Workplane("XY").rect(20, 20).extrude(100)
slot = cq.Workplane("XY").rect(6.2, 5).extrude(100).translate((0, 7.5, 0))
undercut = cq.Workplane("XY").rect(8, 2.5).extrude(100).translate((0, 5.5, 0))
one_side = slot.union(undercut)
cuts = one_side
for angle in (90, 180, 270):
    cuts = cuts.union(one_side.rotate((0, 0, 0), (0, 0, 1), angle))
result = profile.cut(cuts).faces(">Z").workplane().hole(4.2)
