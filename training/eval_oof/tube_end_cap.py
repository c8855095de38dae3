import cadquery as cq

# End cap for a 30x30 square tube: domed cap plate, ribbed plug.
cap = cq.Workplane("XY").rect(30, 30).extrude(3).edges(">Z").fillet(2.5)
plug = cq.Workplane("XY").rect(25, 25).rect(21, 21).extrude(-12)
ribs = cq.Workplane("XY", origin=(0, 0, -4)).rect(26, 26).rect(25, 25).extrude(-1.2)
result = cap.union(plug).union(ribs)
