"""Inside freecadcmd: package.xml through FreeCAD's own reader; insertion, properties, undo, edit,
save and reopen through the workbench's insert module; preferences in FreeCAD's parameter tree.

Reads fixtures (a CadQuery BREP, its source, an image) from the folder in CADSNAP_FC_FIXTURES.
"""

import json
import os
import tempfile
import unittest
import zipfile
from pathlib import Path

import FreeCAD
import Part

from freecad_workbench import insert, messages, preferences
from freecad_workbench.launcher import addon_root

FIXTURES = Path(os.environ.get("CADSNAP_FC_FIXTURES", "."))


def _fixture(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def _read(path):
    return Path(path).read_bytes()


class PackageMetadataTest(unittest.TestCase):
    def test_freecad_reads_package_xml(self):
        meta = FreeCAD.Metadata(str(addon_root() / "package.xml"))
        self.assertEqual(meta.Name, "CadSnap")
        self.assertEqual(meta.Version, "0.1.0")
        self.assertIn("LGPL-2.1-or-later", [entry["name"] for entry in meta.License])
        self.assertTrue(meta.Maintainer and meta.Maintainer[0]["name"] == "CadSnap developers")
        self.assertTrue(meta.FreeCADMin.startswith("0.20"))
        self.assertTrue((addon_root() / meta.Icon).is_file(), meta.Icon)
        self.assertTrue(meta.supportsCurrentFreeCAD())
        workbenches = meta.Content["workbench"]
        self.assertEqual(len(workbenches), 1)
        self.assertEqual(workbenches[0].Classname, "CadSnapWorkbench")
        self.assertEqual(workbenches[0].Subdirectory, "./")
        self.assertTrue((addon_root() / "InitGui.py").is_file())


class InsertTest(unittest.TestCase):
    def setUp(self):
        self.doc = FreeCAD.newDocument("CadSnapTest")
        self.doc.UndoMode = 1  # on in the GUI, off by default in freecadcmd
        self.brep = _fixture("box.brep")
        self.info = insert.SolidInfo(
            source=_fixture("box.py"), image_path=str(FIXTURES / "flange plate.png"), backend="hf",
            model="tiny-llava", score=0.875, instruction="a plate", camera="Rotation(0,0,0,1)")
        self.expected = json.loads(_fixture("box.json"))

    def tearDown(self):
        FreeCAD.closeDocument(self.doc.Name)

    def test_insert_sets_shape_name_and_properties(self):
        obj = insert.insert_solid(self.doc, self.brep, self.info)
        self.assertEqual(obj.TypeId, "Part::Feature")
        self.assertEqual(obj.Name, "flange_plate")
        self.assertEqual(obj.Label, "flange plate")
        self.assertTrue(obj.Shape.isValid())
        self.assertEqual(len(obj.Shape.Solids), 1)
        self.assertAlmostEqual(obj.Shape.Volume, self.expected["volume"], places=6)
        self.assertEqual(obj.CadQuerySource, self.info.source)
        self.assertEqual(_read(obj.InputImage), _read(self.info.image_path))  # a copy kept in the document
        self.assertEqual((obj.Backend, obj.Model, obj.Instruction), ("hf", "tiny-llava", "a plate"))
        self.assertAlmostEqual(obj.Score, 0.875)
        for _, name, _ in insert.PROPERTIES:
            self.assertEqual(obj.getGroupOfProperty(name), "CadSnap")
        self.assertTrue(obj.Placement.isIdentity())

    def test_insert_at_a_picked_point(self):
        obj = insert.insert_solid(self.doc, self.brep, self.info, placement=FreeCAD.Vector(10, 20, 30))
        self.assertEqual(obj.Placement.Base, FreeCAD.Vector(10, 20, 30))
        self.assertAlmostEqual(obj.Shape.BoundBox.XMin, self.expected["bbox"][0] + 10, places=6)

    def test_one_undo_removes_the_insertion_and_redo_brings_it_back(self):
        before = self.doc.UndoCount
        obj = insert.insert_solid(self.doc, self.brep, self.info)
        name = obj.Name
        self.assertEqual(self.doc.UndoCount, before + 1)
        self.doc.undo()
        self.assertIsNone(self.doc.getObject(name))
        self.doc.redo()
        self.assertAlmostEqual(self.doc.getObject(name).Shape.Volume, self.expected["volume"], places=6)

    def test_bad_geometry_leaves_the_document_untouched(self):
        for bad in ("", "not a brep", self.brep[: len(self.brep) // 3]):
            with self.assertRaises(insert.InsertError):
                insert.insert_solid(self.doc, bad, self.info)
        self.assertEqual(self.doc.Objects, [])
        self.assertEqual(self.doc.UndoCount, 0)

    def test_failure_inside_the_transaction_is_rolled_back(self):
        with self.assertRaises(Exception):  # noqa: B017 - whatever FreeCAD raises for a bad placement
            insert.insert_solid(self.doc, self.brep, self.info, placement="not a placement")
        self.assertEqual(self.doc.Objects, [])

    def test_edit_replaces_shape_and_source_in_one_undoable_step(self):
        obj = insert.insert_solid(self.doc, self.brep, self.info, placement=FreeCAD.Vector(5, 0, 0))
        bigger = Part.makeBox(40, 40, 40).exportBrepToString()
        insert.update_solid(obj, bigger, "import cadquery as cq\nresult = cq.Workplane().box(40, 40, 40)\n")
        self.assertAlmostEqual(obj.Shape.Volume, 64000, places=3)
        self.assertIn("box(40, 40, 40)", obj.CadQuerySource)
        self.assertEqual(obj.Placement.Base, FreeCAD.Vector(5, 0, 0))
        self.doc.undo()
        self.assertAlmostEqual(obj.Shape.Volume, self.expected["volume"], places=6)
        self.assertEqual(obj.CadQuerySource, self.info.source)

    def test_edit_refuses_objects_cadsnap_did_not_make(self):
        plain = self.doc.addObject("Part::Box", "Box")
        with self.assertRaises(insert.InsertError):
            insert.update_solid(plain, self.brep, "x")

    def test_saved_document_reopens_with_everything(self):
        obj = insert.insert_solid(self.doc, self.brep, self.info)
        name = obj.Name
        path = os.path.join(tempfile.mkdtemp(), "part.FCStd")
        self.doc.saveAs(path)
        FreeCAD.closeDocument(self.doc.Name)
        self.doc = FreeCAD.openDocument(path)
        again = self.doc.getObject(name)
        self.assertEqual(again.CadQuerySource, self.info.source)
        self.assertEqual(_read(again.InputImage), _read(self.info.image_path))
        self.assertIn("flange plate.png", zipfile.ZipFile(path).namelist())  # the picture is in the file
        self.assertEqual((again.Backend, again.Model, again.CaptureCamera),
                         ("hf", "tiny-llava", "Rotation(0,0,0,1)"))
        self.assertAlmostEqual(again.Score, 0.875)
        self.assertEqual(again.getGroupOfProperty("CadQuerySource"), "CadSnap")
        self.assertTrue(again.Shape.isValid())
        self.assertAlmostEqual(again.Shape.Volume, self.expected["volume"], places=6)


class FeatureTreeInsertTest(unittest.TestCase):
    """insert_part and Edit CadQuery on a Body, with plans the runtime's sandbox traced (plans.json)."""

    def setUp(self):
        self.doc = FreeCAD.newDocument("CadSnapTree")
        self.doc.UndoMode = 1
        self.parts = json.loads(_fixture("plans.json"))
        box = self.parts["box"]
        self.info = insert.SolidInfo(source=box["code"], image_path=str(FIXTURES / "flange plate.png"),
                                     backend="hf", model="tiny-llava", score=0.5, instruction="a block",
                                     camera="Rotation(0,0,0,1)")

    def tearDown(self):
        FreeCAD.closeDocument(self.doc.Name)

    def _insert_body(self, placement=None):
        box = self.parts["box"]
        body, message = insert.insert_part(self.doc, box["brep"], self.info, placement=placement,
                                           plan=box["plan"])
        self.assertEqual((body.TypeId, message), ("PartDesign::Body", ""))
        return body

    def _length(self):
        """The alias of the box's 30 mm side in the Parameters spreadsheet (the tracer names it)."""
        return next(p["name"] for p in self.parts["box"]["plan"]["parameters"] if p["value"] == 30)

    def test_a_mapped_plan_becomes_a_body_with_its_parameters_beside_the_part(self):
        body = self._insert_body(FreeCAD.Vector(50, 0, 0))
        self.assertEqual((body.Name, body.Label), ("flange_plate", "flange plate"))
        self.assertEqual(body.Placement.Base, FreeCAD.Vector(50, 0, 0))
        self.assertAlmostEqual(body.Shape.BoundBox.XMin, 35.0, places=6)  # the box is centred at 0
        self.assertAlmostEqual(body.Shape.Volume, 6000.0, places=6)
        sheet = self.doc.getObject("Parameters")
        self.assertEqual(sheet.Label, "flange plate parameters")
        self.assertEqual(sheet.getContents(self._length()), "30")
        self.assertEqual((body.CadQuerySource, body.Backend, body.Score), (self.info.source, "hf", 0.5))
        self.assertEqual(self.doc.UndoCount, 1)
        self.doc.undo()
        self.assertEqual(self.doc.Objects, [])

    def test_a_body_shows_its_solid_only(self):
        body = self._insert_body()
        shown = [o.Name for o in body.Group if o.Visibility]
        self.assertEqual(shown, [body.Tip.Name])
        self.assertTrue(body.Visibility)
        self.assertFalse(body.Origin.Visibility)
        sheet = self.doc.getObject("Parameters")
        # get(): the text itself (FreeCAD 1.x's getContents puts an apostrophe before a text cell's).
        self.assertEqual((sheet.get("A1"), sheet.get("B1"), sheet.get("C1")), ("Parameter", "Value", "Unit"))
        self.assertEqual(sheet.get("C2"), "mm")
        self.assertGreaterEqual(sheet.getColumnWidth("A"), 180)

    def test_the_insertion_entry_point_needs_no_picture(self):
        box = self.parts["box"]
        info = insert.SolidInfo(source=box["code"])
        body, message = insert.insert_plan(self.doc, box["plan"], box["brep"], info, "Parametric",
                                           placement=FreeCAD.Vector(0, 0, 7))
        self.assertEqual((body.TypeId, message, body.Name, body.Label), ("PartDesign::Body", "", "Parametric",
                                                                          "Parametric"))
        self.assertEqual((body.CadQuerySource, body.InputImage), (box["code"], ""))
        self.assertEqual(body.Placement.Base, FreeCAD.Vector(0, 0, 7))
        self.assertEqual(self.doc.UndoCount, 1)
        # A capture's timestamped file name names nothing: such a part is CadSnap, labelled by its name.
        capture = insert.SolidInfo(source=box["code"], image_path="/cache/capture-view-20261207-101500.png")
        obj, _ = insert.insert_part(self.doc, box["brep"], capture, plan=box["plan"])
        self.assertEqual((obj.Name, obj.Label), ("CadSnap", "CadSnap"))

    def test_solid_with_source_when_asked(self):
        box = self.parts["box"]
        obj, message = insert.insert_part(self.doc, box["brep"], self.info, plan=box["plan"],
                                          feature_tree=False)
        self.assertEqual((obj.TypeId, message), ("Part::Feature", ""))
        self.assertEqual([o.Name for o in self.doc.Objects], [obj.Name])

    def test_an_unmappable_plan_falls_back_and_says_which_step(self):
        sphere = self.parts["sphere"]
        obj, message = insert.insert_part(self.doc, sphere["brep"], self.info, plan=sphere["plan"],
                                          placement=FreeCAD.Vector(0, 30, 0))
        self.assertEqual(obj.TypeId, "Part::Feature")
        self.assertEqual([o.Name for o in self.doc.Objects], [obj.Name])
        self.assertEqual(obj.Placement.Base, FreeCAD.Vector(0, 30, 0))
        self.assertTrue(message.startswith(messages.TREE_FALLBACK_PREFIX), message)
        text = messages.tree_fallback(obj.Label, message)
        self.assertTrue(text.startswith("flange plate was inserted as a solid with its CadQuery source, "
                                        "not as a feature tree: line 3: sphere()"), text)

    def test_edit_rebuilds_the_body_in_one_undoable_step(self):
        folder = self.doc.addObject("App::DocumentObjectGroup", "Parts")
        body = self._insert_body(FreeCAD.Vector(50, 0, 0))
        folder.addObject(body)
        names = sorted(o.Name for o in self.doc.Objects)
        undo_count = self.doc.UndoCount
        longer = self.parts["longer"]
        new, message = insert.update_part(body, longer["brep"], longer["code"], longer["plan"])
        self.assertEqual((new.TypeId, message), ("PartDesign::Body", ""))
        self.assertAlmostEqual(new.Shape.Volume, 8000.0, places=6)
        self.assertEqual((new.Name, new.Label, new.Placement.Base), ("flange_plate", "flange plate",
                                                                     FreeCAD.Vector(50, 0, 0)))
        self.assertEqual(new.CadQuerySource, longer["code"])
        self.assertEqual((_read(new.InputImage), new.Backend, new.Model, new.Instruction, new.CaptureCamera),
                         (_read(self.info.image_path), "hf", "tiny-llava", "a block", "Rotation(0,0,0,1)"))
        self.assertIs(new, body)  # rebuilt inside the same Body: undo restores no Body or Origin
        self.assertIn(new, folder.Group)
        # The old Body went whole: its features, sketch, origin and spreadsheet.
        self.assertEqual(sorted(o.Name for o in self.doc.Objects), names)
        self.assertEqual(self.doc.getObject("Parameters").getContents(self._length()), "40")
        self.assertEqual(self.doc.UndoCount, undo_count + 1)

        self.doc.undo()
        old = self.doc.getObject("flange_plate")
        self.assertEqual(sorted(o.Name for o in self.doc.Objects), names)
        self.assertAlmostEqual(old.Shape.Volume, 6000.0, places=6)
        self.assertEqual(old.CadQuerySource, self.info.source)
        # The restored Body is still driven by its restored spreadsheet.
        self.doc.getObject("Parameters").set(self._length(), "50")
        self.doc.recompute()
        self.assertAlmostEqual(old.Shape.Volume, 10000.0, places=6)

    def test_edit_to_a_program_that_does_not_map_keeps_the_body_with_the_solid_and_says_why(self):
        body = self._insert_body(FreeCAD.Vector(0, 0, 5))
        sphere = self.parts["sphere"]
        new, message = insert.update_part(body, sphere["brep"], sphere["code"], sphere["plan"])
        # The Body stays (undo then restores no Body): the new solid is its hidden base feature.
        self.assertIs(new, body)
        self.assertEqual((new.TypeId, new.BaseFeature.TypeId, new.BaseFeature.Visibility),
                         ("PartDesign::Body", "Part::Feature", False))
        self.assertNotIn("Parameters", [o.Name for o in self.doc.Objects])
        self.assertEqual((new.Label, new.Placement.Base), ("flange plate", FreeCAD.Vector(0, 0, 5)))
        self.assertAlmostEqual(new.Shape.Volume, sphere["volume"], places=3)
        self.assertAlmostEqual(new.Shape.BoundBox.ZMin, -10 + 5, places=6)  # placed by the Body
        self.assertEqual(new.CadQuerySource, sphere["code"])
        self.assertIn("sphere()", messages.tree_fallback(new.Label, message, edited=True))
        # Edited back to a program with a tree: the base solid goes, the features come back.
        longer = self.parts["longer"]
        again, message = insert.update_part(new, longer["brep"], longer["code"], longer["plan"])
        self.assertEqual((again.TypeId, again.BaseFeature, message), ("PartDesign::Body", None, ""))
        self.assertAlmostEqual(again.Shape.Volume, 8000.0, places=6)
        self.assertNotIn("flange_plate_solid", [o.Name for o in self.doc.Objects])
        self.doc.undo()
        self.doc.undo()
        self.assertEqual(self.doc.getObject("flange_plate").TypeId, "PartDesign::Body")
        self.assertIsNone(self.doc.getObject("flange_plate").BaseFeature)
        self.assertAlmostEqual(self.doc.getObject("flange_plate").Shape.Volume, 6000.0, places=6)

    def test_a_body_that_does_not_match_falls_back_and_undo_is_safe(self):
        """A plan whose Body does not match the solid (here: the box's plan with the longer box's BREP)
        falls back to the solid; undo and redo work (FreeCAD 0.20 crashed on undo when the failed Body
        was made and removed inside the same transaction)."""
        box, longer = self.parts["box"], self.parts["longer"]
        obj, message = insert.insert_part(self.doc, longer["brep"], self.info, plan=box["plan"])
        self.assertEqual(obj.TypeId, "Part::Feature")
        self.assertIn("does not match the CadQuery solid", message)
        self.assertEqual([o.Name for o in self.doc.Objects], [obj.Name])
        self.assertEqual(self.doc.UndoCount, 1)
        self.doc.undo()
        self.assertEqual(self.doc.Objects, [])
        self.doc.redo()
        self.assertEqual(len(self.doc.Objects), 1)
        body = self._insert_body()
        new, message = insert.update_part(body, longer["brep"], longer["code"], box["plan"])
        self.assertIs(new, body)
        self.assertEqual(new.BaseFeature.TypeId, "Part::Feature")
        self.assertIn("does not match the CadQuery solid", message)
        self.doc.undo()
        self.assertIsNone(body.BaseFeature)
        self.assertAlmostEqual(body.Shape.Volume, 6000.0, places=6)

    def test_a_failing_edit_leaves_the_body_untouched(self):
        body = self._insert_body()
        names, undo_count = sorted(o.Name for o in self.doc.Objects), self.doc.UndoCount
        longer = self.parts["longer"]
        for bad in ("", "not a brep"):
            with self.assertRaises(insert.InsertError):
                insert.update_part(body, bad, longer["code"], longer["plan"])
        self.assertEqual(sorted(o.Name for o in self.doc.Objects), names)
        self.assertEqual(self.doc.UndoCount, undo_count)
        self.assertEqual(body.CadQuerySource, self.info.source)

    def test_a_selected_feature_stands_for_its_body(self):
        body = self._insert_body()
        pad = next(o for o in body.Group if o.TypeId == "PartDesign::Pad")
        self.assertIs(insert.cadsnap_owner(pad), body)
        self.assertIs(insert.cadsnap_owner(body), body)
        self.assertIsNone(insert.cadsnap_owner(self.doc.addObject("Part::Box", "Box")))
        other = self.doc.addObject("PartDesign::Body", "Other")
        self.assertIsNone(insert.cadsnap_owner(other.newObject("PartDesign::AdditiveBox", "Cube")))


class PreferencesTreeTest(unittest.TestCase):
    def test_round_trip_through_the_parameter_tree(self):
        group = FreeCAD.ParamGet(preferences.PARAM_PATH)
        saved = preferences.Preferences(runtime_url="http://127.0.0.1:5000", candidates=7,
                                        job_timeout_s=42.5, start_runtime=False, model_path="/m/x.gguf")
        saved.save(group)
        self.assertEqual(preferences.Preferences.load(FreeCAD.ParamGet(preferences.PARAM_PATH)), saved)
        self.assertEqual(preferences.current(), saved)
        group.Clear()
        self.assertEqual(preferences.current(), preferences.Preferences())
