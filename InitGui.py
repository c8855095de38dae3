"""FreeCAD loads this when it starts: it registers the CadSnap workbench (commands load on activation)."""

import os
import sys

import FreeCADGui as Gui

# FreeCAD puts each Mod folder on sys.path; make sure of it, since the workbench imports
# model_runtime.protocol from beside freecad_workbench. (__file__ is missing in some versions.)
try:
    _ROOT = os.path.dirname(os.path.abspath(__file__))
except NameError:
    import freecad_workbench as _fw

    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(_fw.__file__)))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


class CadSnapWorkbench(Gui.Workbench):
    """Picture of a part in, editable CadQuery solid out."""

    MenuText = "CadSnap"
    ToolTip = "Turn a picture of a part into an editable CadQuery solid"

    def Initialize(self):
        from freecad_workbench import commands

        commands.register()
        self.appendToolbar("CadSnap", commands.TOOLBAR)
        self.appendMenu("CadSnap", commands.MENU)

    def Activated(self):
        pass

    def Deactivated(self):
        pass

    def GetClassName(self):
        return "Gui::PythonWorkbench"


# Set here, not in the class body: FreeCAD runs this file with separate globals and locals,
# so a class body cannot see the names above.
CadSnapWorkbench.Icon = os.path.join(_ROOT, "freecad_workbench", "resources", "icons", "CadSnap.svg")
Gui.addWorkbench(CadSnapWorkbench())
