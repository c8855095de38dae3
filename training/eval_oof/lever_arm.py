import cadquery as cq

# Lever: two bosses joined by a tapered web, pocketed, bores in both bosses.
web = cq.Workplane("XY").polyline([(0, -10), (80, -6), (80, 6), (0, 10)]).close().extrude(6)
bosses = cq.Workplane("XY").pushPoints([(0, 0), (80, 0)]).circle(12).extrude(12)
lever = web.union(bosses).faces(">Z").workplane().pushPoints([(0, 0), (80, 0)]).hole(10)
pocket = cq.Workplane("XY", origin=(0, 0, 3)).center(40, 0).slot2D(36, 8).extrude(3)
result = lever.cut(pocket)
