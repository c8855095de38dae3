"""Build feature plans into documents inside ``freecadcmd`` (headless generate, benchmarks).

Run as ``freecadcmd feature_tree_job.py`` with ``CADSNAP_FC_JOB`` naming a JSON file:
``{"root": repository root, "jobs": [{"plan", "brep_path", "fcstd"?, "source"?, "image_path"?, "name"?}],
"result": path}``. Each job gets a fresh document; the result file gets one entry per job:
``{"body": bool, "iou", "volume_error", "message", "seconds", "loose_sketches"}``. Any exception is
caught per job, so one bad plan never hides the others.
"""

import json
import os
import sys
import time


def _run() -> None:
    with open(os.environ["CADSNAP_FC_JOB"], encoding="utf-8") as handle:
        config = json.load(handle)
    if config["root"] not in sys.path:
        sys.path.insert(0, config["root"])
    import FreeCAD

    from freecad_workbench import feature_tree, insert
    from freecad_workbench.naming import object_name

    results = []
    for job in config["jobs"]:
        start = time.monotonic()
        doc = FreeCAD.newDocument("CadSnapJob")
        entry = {"body": False, "iou": 0.0, "volume_error": 1.0, "message": "", "loose_sketches": []}
        try:
            with open(job["brep_path"], encoding="utf-8") as handle:
                brep = handle.read()
            plan = job["plan"]
            if job.get("fcstd"):
                info = insert.SolidInfo(source=job.get("source", ""), image_path=job.get("image_path", ""))
                if job.get("name"):  # a program's document: named after the program, not a picture
                    obj, message = insert.insert_plan(doc, plan, brep, info, object_name(job["name"]),
                                                      job["name"])
                else:
                    obj, message = insert.insert_part(doc, brep, info, plan=plan)
                entry["body"] = obj.TypeId == "PartDesign::Body"
                entry["message"] = message
                doc.saveAs(job["fcstd"])
            else:
                body, _sheet, loose = feature_tree.build_body(doc, plan)
                ok, iou, error = feature_tree.check_body(body, brep)
                entry.update(
                    body=ok,
                    iou=iou,
                    volume_error=error,
                    loose_sketches=loose,
                    message="" if ok else f"no match: IoU {iou:.5f}",
                )
        except feature_tree.BuildError as error:
            entry["message"] = str(error)
        except Exception as error:  # noqa: BLE001 - reported per job
            entry["message"] = f"{type(error).__name__}: {error}"
        entry["seconds"] = round(time.monotonic() - start, 3)
        results.append(entry)
        FreeCAD.closeDocument(doc.Name)
    with open(config["result"], "w", encoding="utf-8") as handle:
        json.dump(results, handle)


if "CADSNAP_FC_JOB" in os.environ:  # run by freecadcmd as a script, never on import
    _run()
