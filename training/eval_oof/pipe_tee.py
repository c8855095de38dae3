import cadquery as cq

# Equal pipe tee, hollow, with socket ends.
run = cq.Workplane("YZ").circle(15).extrude(50, both=True)
branch = cq.Workplane("XY").circle(15).extrude(45)
sockets = (
    cq.Workplane("YZ").workplane(offset=35).circle(18).extrude(15)
    .union(cq.Workplane("YZ").workplane(offset=-50).circle(18).extrude(15))
    .union(cq.Workplane("XY").workplane(offset=30).circle(18).extrude(15))
)
bores = cq.Workplane("YZ").circle(12).extrude(50, both=True).union(cq.Workplane("XY").circle(12).extrude(45))
result = run.union(branch).union(sockets).cut(bores)
