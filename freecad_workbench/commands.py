"""The workbench's toolbar and menu commands (FreeCAD GUI). Each is a thin call into a module.

The top of the workbench's imports: the panel and the editor are imported lazily from here and never
import this module back (they speak through ``report``)."""

from __future__ import annotations

from pathlib import Path

import FreeCAD
import FreeCADGui as Gui

from . import capture, session
from .preferences import current as current_preferences

ICONS = Path(__file__).resolve().parent / "resources" / "icons"

TOOLBAR = ["CadSnap_CaptureView", "CadSnap_CaptureRegion", "CadSnap_OpenImage", "CadSnap_Generate",
           "CadSnap_EditCode", "CadSnap_MakeParametric"]
MENU = TOOLBAR[:3] + ["CadSnap_PasteImage"] + TOOLBAR[3:] + ["CadSnap_OpenShape", "Separator",
                                                          "CadSnap_SetupRuntime", "CadSnap_Preferences"]


def _icon(name: str) -> str:
    return str(ICONS / f"{name}.svg")


def _report(error: Exception) -> None:
    from .qt import QtWidgets

    FreeCAD.Console.PrintWarning(f"CadSnap: {error}\n")
    QtWidgets.QMessageBox.warning(Gui.getMainWindow(), "CadSnap", str(error))


def open_generate_panel(picture: session.Picture | None = None):
    """Show the Generate panel (replacing an open one); returns it."""
    from .task_panel import GeneratePanel

    panel = GeneratePanel(picture)
    session.panels.replace(panel)  # closes the previous panel: its job is cancelled on the runtime
    if Gui.Control.activeDialog():
        Gui.Control.closeDialog()  # another workbench's task dialog
    Gui.Control.showDialog(panel)
    return panel


class _Command:
    name = ""
    icon = ""
    menu = ""
    tip = ""

    def GetResources(self):  # noqa: N802 - FreeCAD's name
        return {"Pixmap": _icon(self.icon), "MenuText": self.menu, "ToolTip": self.tip}

    def IsActive(self):  # noqa: N802
        return True


class CaptureView(_Command):
    icon, menu = "CaptureView", "Capture 3D view"
    tip = "Render the current 3D view on white and generate a solid from it"

    def IsActive(self):  # noqa: N802
        return Gui.ActiveDocument is not None

    def Activated(self):  # noqa: N802
        _generate_from(lambda: capture.capture_view(current_preferences().capture_size))


def _generate_from(get_picture) -> None:
    """Open the Generate panel on the picture ``get_picture`` returns (None: the user cancelled)."""
    try:
        picture = get_picture()
    except capture.CaptureError as error:
        _report(error)
        return
    if picture is not None:
        open_generate_panel(picture)


class CaptureRegion(_Command):
    icon, menu = "CaptureRegion", "Capture screen region"
    tip = "Drag a rectangle over the screen and generate a solid from it"

    def Activated(self):  # noqa: N802
        def done(picture):
            if picture is not None:
                open_generate_panel(picture)

        session.region_selector = capture.RegionSelector(done)
        session.region_selector.showFullScreen()


class OpenImage(_Command):
    icon, menu = "OpenImage", "Open image…"
    tip = "Open a picture of a part and generate a solid from it"

    def Activated(self):  # noqa: N802
        _generate_from(capture.ask_image_file)


class PasteImage(_Command):
    icon, menu = "OpenImage", "Paste image"
    tip = "Generate a solid from the image on the clipboard"

    def Activated(self):  # noqa: N802
        _generate_from(capture.paste_clipboard)


class Generate(_Command):
    icon, menu = "Generate", "Generate…"
    tip = "Open the Generate panel with the last picture"

    def Activated(self):  # noqa: N802
        open_generate_panel()


class EditCode(_Command):
    icon, menu = "EditCode", "Edit CadQuery…"
    tip = "Edit the selected CadSnap solid's or Body's CadQuery source and re-run it"

    @staticmethod
    def _selected():
        from .insert import cadsnap_owner

        selection = Gui.Selection.getSelection()
        # A click on a CadSnap Body's face selects its feature: edit the Body it belongs to.
        return cadsnap_owner(selection[0]) if len(selection) == 1 else None

    def IsActive(self):  # noqa: N802
        return self._selected() is not None

    def Activated(self):  # noqa: N802
        from .editor import EditDialog

        obj = self._selected()
        if obj is not None:
            session.edit_dialog = EditDialog(obj, Gui.getMainWindow())
            session.edit_dialog.show()


class MakeParametric(_Command):
    icon, menu = "Generate", "Make parametric"
    tip = "Rebuild the selected solid(s) as PartDesign Bodies with named parameters (checked by volume IoU)"

    def IsActive(self):  # noqa: N802
        selection = Gui.Selection.getSelection()
        return any(getattr(o, "Shape", None) is not None and o.Shape.Solids for o in selection)

    def Activated(self):  # noqa: N802
        from . import make_parametric

        make_parametric.run(make_parametric.selected_shapes())


class OpenShape(_Command):
    icon, menu = "OpenImage", "Open shape…"
    tip = "Rebuild a STEP, IGES, BREP, STL, OBJ, PLY or 3MF file as a PartDesign Body with named parameters"

    def Activated(self):  # noqa: N802
        from . import make_parametric

        make_parametric.open_shape_file()


class SetupRuntime(_Command):
    icon, menu = "SetupRuntime", "Set up runtime…"
    tip = "Create a Python environment and install the CadSnap runtime into it"

    def Activated(self):  # noqa: N802
        from .setup_dialog import SetupDialog

        session.setup_dialog = SetupDialog(Gui.getMainWindow())
        session.setup_dialog.show()


class Preferences(_Command):
    icon, menu = "Preferences", "Preferences…"
    tip = "Runtime, backend, model, candidates and timeouts"

    def Activated(self):  # noqa: N802
        Gui.showPreferences("CadSnap")


COMMANDS = {
    "CadSnap_CaptureView": CaptureView, "CadSnap_CaptureRegion": CaptureRegion,
    "CadSnap_OpenImage": OpenImage, "CadSnap_PasteImage": PasteImage, "CadSnap_Generate": Generate,
    "CadSnap_EditCode": EditCode, "CadSnap_SetupRuntime": SetupRuntime, "CadSnap_Preferences": Preferences,
    "CadSnap_MakeParametric": MakeParametric, "CadSnap_OpenShape": OpenShape,
}
_registered = False


def register() -> None:
    """Add the commands and the preference page; stop a runtime we started when FreeCAD quits."""
    global _registered
    if _registered:
        return
    from .preferences_page import PreferencePage
    from .qt import QtWidgets

    Gui.addIconPath(str(ICONS))  # the preference page's icon, preferences-cadsnap.svg
    for name, command in COMMANDS.items():
        Gui.addCommand(name, command())
    Gui.addPreferencePage(PreferencePage, "CadSnap")
    QtWidgets.QApplication.instance().aboutToQuit.connect(session.runtime.stop)
    _registered = True
