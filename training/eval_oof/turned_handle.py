import cadquery as cq

# File handle: revolved profile with a bulge (arcs), ferrule step and a blind tang hole.
handle = (
    cq.Workplane("XZ")
    .moveTo(0, 0)
    .lineTo(9, 0)
    .lineTo(9, 12)
    .lineTo(11, 12)
    .threePointArc((15, 55), (10, 100))
    .threePointArc((6, 106), (0, 108))
    .close()
    .revolve(360, (0, 0, 0), (0, 1, 0))
)
result = handle.faces("<Z").workplane().hole(4, 40)
