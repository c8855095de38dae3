import cadquery as cq

# Electronics box: shelled body, a lip around the opening, four screw bosses inside.
length, width, height, wall = 90, 60, 35, 2.5
body = cq.Workplane("XY").box(length, width, height).edges("|Z").fillet(6)
body = body.faces(">Z").shell(-wall)
lip = (
    cq.Workplane("XY", origin=(0, 0, height / 2))
    .rect(length - wall, width - wall)
    .rect(length - 2 * wall - 1.5, width - 2 * wall - 1.5)
    .extrude(3)
)
bosses = (
    cq.Workplane("XY", origin=(0, 0, -height / 2 + wall))
    .rect(length - 16, width - 16, forConstruction=True)
    .vertices()
    .circle(4)
    .circle(1.3)
    .extrude(height - wall - 4)
)
result = body.union(lip).union(bosses)
