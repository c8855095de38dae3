import cadquery as cq

# Extruded heat sink: base plate with nine fins.
base = cq.Workplane("XY").box(60, 50, 4, centered=(True, True, False))
fins = cq.Workplane("XY", origin=(0, 0, 4)).rarray(6.5, 1, 9, 1).rect(1.6, 50).extrude(22)
result = base.union(fins).faces("<Z").workplane().rarray(50, 1, 2, 1).hole(3.2)
