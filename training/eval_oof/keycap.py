import cadquery as cq

# Keyboard keycap: lofted shell with a cross stem.
outer = cq.Workplane("XY").rect(18, 18).workplane(offset=8).rect(13, 13).loft()
inner = cq.Workplane("XY").rect(16, 16).workplane(offset=6.5).rect(11.5, 11.5).loft()
cap = outer.cut(inner)
stem = cq.Workplane("XY").circle(2.8).extrude(7)
cross = (
    cq.Workplane("XY").rect(4.1, 1.3).extrude(5)
    .union(cq.Workplane("XY").rect(1.3, 4.1).extrude(5))
)
result = cap.union(stem.cut(cross))
