"""Inside freecadcmd: a traced plan built as a PartDesign Body, named dimensions changed, fallbacks.

Reads ``plan.json`` (plan, BREP path, CadQuery volumes for changed parameters) from the folder in
CADSNAP_FC_FIXTURES and saves the inserted document there as ``part.FCStd`` for the reopen check.
"""

import copy
import json
import os
import unittest
from pathlib import Path

import FreeCAD

from freecad_workbench import feature_tree, insert

FIXTURES = Path(os.environ.get("CADSNAP_FC_FIXTURES", "."))


class FeatureTreeTest(unittest.TestCase):
    def setUp(self):
        self.data = json.loads((FIXTURES / "plan.json").read_text(encoding="utf-8"))
        self.plan = self.data["plan"]
        self.brep = Path(self.data["brep_path"]).read_text(encoding="utf-8")
        self.doc = FreeCAD.newDocument("FeatureTree")

    def tearDown(self):
        FreeCAD.closeDocument(self.doc.Name)

    def test_body_matches_with_fully_constrained_named_sketches(self):
        body, sheet, loose = feature_tree.build_body(self.doc, self.plan)
        ok, iou, error = feature_tree.check_body(body, self.brep)
        self.assertTrue(ok, (iou, error))
        self.assertGreaterEqual(iou, 0.999)
        types = [o.TypeId for o in body.Group]
        for kind in (
            "PartDesign::Pad",
            "PartDesign::Fillet",
            "PartDesign::Hole",
            "PartDesign::MultiTransform",
            "PartDesign::Pocket",
        ):
            self.assertIn(kind, types)
        # The 2 x 2 holes: one Hole, repeated by a MultiTransform of two LinearPatterns.
        self.assertEqual(types.count("PartDesign::Hole"), 1)
        grid = next(o for o in body.Group if o.TypeId == "PartDesign::MultiTransform")
        self.assertEqual([o.TypeId for o in grid.Originals], ["PartDesign::Hole"])
        self.assertEqual([(t.Occurrences, t.Length) for t in grid.Transformations], [(2, 60.0), (2, 40.0)])
        self.assertIn(("Occurrences", f"{sheet.Name}.hole_count_x"), grid.Transformations[0].ExpressionEngine)
        sketches = [o for o in body.Group if o.TypeId == "Sketcher::SketchObject"]
        self.assertEqual(loose, [])
        for sketch in sketches:
            self.assertEqual(sketch.solve(), 0, sketch.Label)
            self.assertTrue(sketch.FullyConstrained, sketch.Label)
        names = {c.Name for s in sketches for c in s.Constraints if c.Name}
        self.assertTrue({"plate_length", "plate_width", "hole_diameter", "pocket_length"} <= names, names)
        self.assertEqual(sheet.getContents("plate_length"), "80")
        hole = next(o for o in body.Group if o.TypeId == "PartDesign::Hole")
        self.assertIn(("Diameter", f"{sheet.Name}.hole_diameter"), hole.ExpressionEngine)

    def test_changing_a_named_dimension_recomputes_to_cadquerys_volume(self):
        body, sheet, _ = feature_tree.build_body(self.doc, self.plan)
        for name, (value, volume) in self.data["variants"].items():
            sheet.set(name, str(value))
            self.doc.recompute()
            self.assertTrue(all("Invalid" not in o.State for o in body.Group), name)
            self.assertAlmostEqual(body.Shape.Volume / volume, 1.0, places=6, msg=name)
            sheet.set(name, str(next(p["value"] for p in self.plan["parameters"] if p["name"] == name)))
            self.doc.recompute()
            self.assertAlmostEqual(body.Shape.Volume / self.plan["volume"], 1.0, places=6, msg=name)

    def test_a_users_document_with_shapes_keeps_its_naming_and_is_told(self):
        """FreeCAD 1.x: a document with nothing in it builds without the string hasher (dress-ups keep
        their edges, FreeCAD issue 18169); one that already holds shapes keeps its setting, and the Report
        view says what that means for the Body's Fillet. 0.20 has no hasher: nothing to set or say."""
        hashing = "UseHasher" in self.doc.PropertiesList
        body, _, _ = feature_tree.build_body(self.doc, self.plan)
        self.assertTrue(feature_tree.stable_element_names(self.doc))
        self.assertEqual(feature_tree.hashed_dressup_note(body), "")
        users = FreeCAD.newDocument("UsersDocument")
        try:
            users.addObject("Part::Box", "Box")
            users.recompute()
            theirs, _, _ = feature_tree.build_body(users, self.plan)
            note = feature_tree.hashed_dressup_note(theirs)
            if hashing:
                self.assertTrue(users.UseHasher)
                self.assertIn("Fillet", note)
                self.assertIn("UseHasher = False", note)
            else:
                self.assertEqual(note, "")
        finally:
            FreeCAD.closeDocument(users.Name)

    def test_polar_pattern_count_and_counterbore_are_parameters(self):
        data = json.loads((FIXTURES / "flange.json").read_text(encoding="utf-8"))
        brep = Path(data["brep_path"]).read_text(encoding="utf-8")
        body, sheet, _ = feature_tree.build_body(self.doc, data["plan"])
        self.assertTrue(feature_tree.check_body(body, brep)[0])
        pattern = next(o for o in body.Group if o.TypeId == "PartDesign::PolarPattern")
        self.assertEqual(pattern.Occurrences, 8)
        self.assertEqual([o.TypeId for o in pattern.Originals], ["PartDesign::Hole"])
        for name, (value, volume) in data["variants"].items():
            sheet.set(name, str(value))
            self.doc.recompute()
            self.assertAlmostEqual(body.Shape.Volume / volume, 1.0, places=6, msg=name)
            sheet.set(name, str(next(p["value"] for p in data["plan"]["parameters"] if p["name"] == name)))
            self.doc.recompute()

    def test_linear_pattern_spacing_and_count_are_parameters(self):
        data = json.loads((FIXTURES / "row.json").read_text(encoding="utf-8"))
        brep = Path(data["brep_path"]).read_text(encoding="utf-8")
        body, sheet, loose = feature_tree.build_body(self.doc, data["plan"])
        self.assertTrue(feature_tree.check_body(body, brep)[0])
        self.assertEqual(loose, [])
        pattern = next(o for o in body.Group if o.TypeId == "PartDesign::LinearPattern")
        self.assertEqual((pattern.Occurrences, pattern.Length), (5, 80.0))
        self.assertEqual([o.TypeId for o in pattern.Originals], ["PartDesign::Pocket"])
        for name, (value, volume) in data["variants"].items():
            sheet.set(name, str(value))
            self.doc.recompute()
            self.assertTrue(all("Invalid" not in o.State for o in body.Group), name)
            self.assertAlmostEqual(body.Shape.Volume / volume, 1.0, places=6, msg=name)
            sheet.set(name, str(next(p["value"] for p in data["plan"]["parameters"] if p["name"] == name)))
            self.doc.recompute()
            self.assertAlmostEqual(body.Shape.Volume / data["plan"]["volume"], 1.0, places=6, msg=name)

    def test_an_unmapped_step_falls_back_to_the_solid_and_names_the_step(self):
        plan = copy.deepcopy(self.plan)
        plan["status"] = "unmapped"
        plan["features"][2] = {"kind": "unmapped", "method": "loft", "line": 7, "reason": "no feature"}
        plan["reasons"] = ["line 7: loft(): no feature"]
        info = insert.SolidInfo(source="src", image_path="plate.png")
        obj, message = insert.insert_part(self.doc, self.brep, info, plan=plan)
        self.assertEqual(obj.TypeId, "Part::Feature")
        self.assertIn("line 7: loft()", message)
        self.assertEqual(len(self.doc.Objects), 1)

    def test_a_body_that_does_not_match_falls_back(self):
        plan = copy.deepcopy(self.plan)
        width = plan["features"][-1]["sketch"]["profiles"][0]["width"]  # the last pocket's
        width["value"] += 2  # a Body that builds but is not the solid
        width.pop("param")
        info = insert.SolidInfo(source="src", image_path="plate.png")
        obj, message = insert.insert_part(self.doc, self.brep, info, plan=plan)
        self.assertEqual(obj.TypeId, "Part::Feature")
        self.assertIn("does not match", message)
        self.assertEqual([o.TypeId for o in self.doc.Objects], ["Part::Feature"])

    def test_inserted_tree_carries_the_source_and_saves(self):
        info = insert.SolidInfo(source=self.data["source"], image_path="plate.png", backend="test")
        obj, message = insert.insert_part(self.doc, self.brep, info, plan=self.plan)
        self.assertEqual(message, "")
        self.assertEqual(obj.TypeId, "PartDesign::Body")
        self.assertEqual(obj.CadQuerySource, self.data["source"])
        self.assertEqual(obj.Label, "plate")
        self.doc.saveAs(str(FIXTURES / "part.FCStd"))
