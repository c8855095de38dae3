import cadquery as cq

# Eccentric cam: offset disc on a hub, bore, set-screw hole.
disc = cq.Workplane("XY").center(6, 0).circle(22).extrude(8)
hub = cq.Workplane("XY").circle(10).extrude(18)
cam = disc.union(hub).faces(">Z").workplane().hole(8)
result = cam.cut(cq.Workplane("YZ", origin=(0, 0, 13)).circle(1.6).extrude(15))
