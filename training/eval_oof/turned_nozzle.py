import cadquery as cq

# Hose nozzle: hex grip, barbed tail, tapered tip, through bore.
hex_part = cq.Workplane("XY").polygon(6, 24).extrude(10)
tip = cq.Workplane("XY", origin=(0, 0, 10)).circle(8).workplane(offset=25).circle(3).loft()
barbs = (
    cq.Workplane("XZ")
    .polyline([(0, 0), (6, 0), (6, -4), (7.5, -4), (5.5, -9), (7.5, -9), (5.5, -14), (5.5, -20), (0, -20)])
    .close()
    .revolve(360, (0, 0, 0), (0, 1, 0))
)
result = hex_part.union(tip).union(barbs).faces(">Z").workplane().hole(2.5)
