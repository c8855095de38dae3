"""FreeCAD-side tests: unittest modules run inside ``freecadcmd`` (or the GUI) by the pytest drivers."""
