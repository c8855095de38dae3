import cadquery as cq

# IPE-style I-beam, 120 mm long, root fillets between web and flanges.
h, b, tw, tf = 80, 46, 3.8, 5.2
section = (
    cq.Sketch()
    .push([(0, (h - tf) / 2)]).rect(b, tf)
    .push([(0, -(h - tf) / 2)]).rect(b, tf)
    .push([(0, 0)]).rect(tw, h - 2 * tf + 1)
    .clean()
)
result = cq.Workplane("YZ").placeSketch(section).extrude(120)
