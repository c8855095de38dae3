import cadquery as cq

# Flanged bearing housing: square flange with four holes, round boss, stepped bore.
flange = cq.Workplane("XY").box(70, 70, 10, centered=(True, True, False)).edges("|Z").fillet(8)
boss = cq.Workplane("XY").circle(26).extrude(28)
housing = flange.union(boss)
housing = housing.faces(">Z").workplane().hole(35, 12)
housing = housing.faces(">Z").workplane().hole(20)
result = housing.faces("<Z").workplane().rect(52, 52, forConstruction=True).vertices().hole(6.6)
