"""CadSnap FreeCAD workbench (runs inside FreeCAD's own Python)."""
