"""FreeCAD GUI script: open a CadSnap feature-tree document, show its tree and the part, save a PNG.

    xvfb-run -a -s "-screen 0 1400x900x24" freecad tests/freecad/feature_tree_screenshot.py

with CADSNAP_SHOT_DOC (the .FCStd) and CADSNAP_SHOT_PNG (where to write) in the environment. The 3D
view is rendered by its own saveImage and painted into the window grab (a grab alone leaves the GL
view blank under Xvfb). Prints CADSNAP-SHOT OK or the Traceback, then quits.
"""

import os
import traceback

import FreeCAD
import FreeCADGui as Gui


def _qt():
    try:
        from PySide import QtCore, QtGui

        QtWidgets = getattr(__import__("PySide", fromlist=["QtWidgets"]), "QtWidgets", QtGui)
    except ImportError:  # FreeCAD 1.1: PySide6 behind the same shim
        from PySide import QtCore, QtGui, QtWidgets
    return QtCore, QtGui, QtWidgets


def shoot():
    QtCore, QtGui, QtWidgets = _qt()
    try:
        doc = FreeCAD.openDocument(os.environ["CADSNAP_SHOT_DOC"])
        Gui.activateWorkbench("PartDesignWorkbench")
        body = next(o for o in doc.Objects if o.TypeId == "PartDesign::Body")
        window = Gui.getMainWindow()
        window.resize(1400, 860)
        for dock in window.findChildren(QtWidgets.QDockWidget):
            if dock.objectName() in ("Combo View", "ComboView"):
                window.resizeDocks([dock], [380], QtCore.Qt.Horizontal)
        # A document written by freecadcmd has no view settings: show the Body's result only.
        for obj in doc.Objects:
            if obj.ViewObject is not None:
                obj.ViewObject.Visibility = obj in (body, body.Tip)
        view = Gui.ActiveDocument.ActiveView
        view.setActiveObject("pdbody", body)
        for tabs in window.findChildren(QtWidgets.QTabWidget):
            for i in range(tabs.count()):
                if tabs.tabText(i) == "Model":
                    tabs.setCurrentIndex(i)
        for tree in window.findChildren(QtWidgets.QTreeWidget):
            tree.expandAll()
            for item in tree.findItems("Origin", QtCore.Qt.MatchExactly | QtCore.Qt.MatchRecursive):
                item.setExpanded(False)
        for splitter in window.findChildren(QtWidgets.QSplitter):
            if splitter.orientation() == QtCore.Qt.Vertical:
                splitter.setSizes([330, 410])
        hole = next((o for o in body.Group if o.TypeId == "PartDesign::Hole"), body.Tip)
        Gui.Selection.addSelection(hole)  # its properties show the expressions to Parameters
        view.viewIsometric()
        view.fitAll()
        for _ in range(5):  # let the property view catch up with the selection
            Gui.updateGui()
            QtWidgets.QApplication.processEvents()
        path = os.environ["CADSNAP_SHOT_PNG"]
        shot = window.grab()
        area = window.findChild(QtWidgets.QMdiArea)
        canvas = max(area.activeSubWindow().widget().findChildren(QtWidgets.QWidget),
                     key=lambda w: w.width() * w.height())
        origin = canvas.mapTo(window, QtCore.QPoint(0, 0))
        rendered = path + ".view.png"
        view.saveImage(rendered, canvas.width(), canvas.height(), "Current")
        painter = QtGui.QPainter(shot)
        painter.drawImage(origin, QtGui.QImage(rendered))
        painter.end()
        os.remove(rendered)
        shot.save(path)
        print("CADSNAP-SHOT OK", flush=True)
    except Exception:  # noqa: BLE001 - report and quit, never hang the GUI
        print(traceback.format_exc(), flush=True)
    QtWidgets.QApplication.instance().quit()


QtCore, _, _ = _qt()
QtCore.QTimer.singleShot(1500, shoot)
