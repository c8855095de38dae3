"""The workbench's FreeCAD-free logic: naming, preferences, request building, job state, launcher."""

from __future__ import annotations

import base64
import io
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from freecad_workbench import jobs, launcher, lifecycle, messages, naming
from freecad_workbench.client import ClientError, RuntimeClient, RuntimeUnreachable
from freecad_workbench.preferences import Preferences, PreferencesError
from model_runtime import protocol


def _png(width=32, height=24, colour="white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(width=40, height=30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "gray").save(buffer, "JPEG", progressive=True)
    return buffer.getvalue()


# --- naming --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "name", "label"), [
    ("/x/flange plate.png", "flange_plate", "flange plate"),
    ("C:/pics/2024-bracket.jpg", "CadSnap_2024_bracket", "2024-bracket"),
    ("/x/Zahnrad-groß.png", "Zahnrad_gro", "Zahnrad-groß"),
    ("/x/___.png", "CadSnap", "___"),
    ("", "CadSnap", "CadSnap"),
    (None, "CadSnap", "CadSnap"),
    # CadSnap's own captures: a timestamp names nothing, so the part is CadSnap, CadSnap001… (label: name)
    ("/cache/captures/capture-view-20261207-101500.png", "CadSnap", ""),
    ("/cache/captures/capture-region-20261207-101500-3.png", "CadSnap", ""),
])
def test_object_names_are_valid_freecad_names(path, name, label):
    assert naming.object_name(path) == name
    assert naming.object_label(path) == label


# --- preferences ---------------------------------------------------------------------------------

class ParamGroup:
    """FreeCAD's ParameterGrp API over a dict (typed getters with defaults, setters)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}

    def _get(self, kind, name, default):
        return self.values.get((kind, name), default)

    def GetString(self, name, default=""):  # noqa: N802
        return self._get("s", name, default)

    def GetInt(self, name, default=0):  # noqa: N802
        return self._get("i", name, default)

    def GetFloat(self, name, default=0.0):  # noqa: N802
        return self._get("f", name, default)

    def GetBool(self, name, default=False):  # noqa: N802
        return self._get("b", name, default)

    def SetString(self, name, value):  # noqa: N802
        assert isinstance(value, str)
        self.values["s", name] = value

    def SetInt(self, name, value):  # noqa: N802
        assert isinstance(value, int) and not isinstance(value, bool)
        self.values["i", name] = value

    def SetFloat(self, name, value):  # noqa: N802
        assert isinstance(value, float)
        self.values["f", name] = value

    def SetBool(self, name, value):  # noqa: N802
        assert isinstance(value, bool)
        self.values["b", name] = value


def test_default_preferences_are_valid_and_local():
    prefs = Preferences().validated()
    assert prefs.runtime_url == f"http://127.0.0.1:{protocol.DEFAULT_PORT}"
    assert (prefs.host, prefs.port, prefs.is_local) == ("127.0.0.1", protocol.DEFAULT_PORT, True)
    assert Preferences.load(ParamGroup()) == Preferences()


def test_preferences_round_trip_with_the_right_types():
    group = ParamGroup()
    saved = Preferences(runtime_url=" http://localhost:5005/ ", interpreter=" /opt/venv/bin/python ",
                        backend="gguf", candidates=8, job_timeout_s=12.5, start_runtime=False)
    saved.save(group)
    assert group.values["i", "candidates"] == 8 and group.values["b", "start_runtime"] is False
    loaded = Preferences.load(group)
    assert loaded.runtime_url == "http://localhost:5005"
    assert loaded.interpreter == "/opt/venv/bin/python"
    assert (loaded.port, loaded.backend, loaded.job_timeout_s, loaded.is_local) == (5005, "gguf", 12.5, True)


@pytest.mark.parametrize(("changes", "words"), [
    ({"runtime_url": "localhost:47615"}, "not an http"),
    ({"runtime_url": "http://127.0.0.1:99999"}, "bad port"),
    ({"backend": "torch"}, "not one of"),
    ({"backend": "remote"}, "remote server"),
    ({"candidates": 0}, "Candidates"),
    ({"candidates": protocol.MAX_CANDIDATES + 1}, "Candidates"),
    ({"capture_size": 10}, "Capture size"),
    ({"job_timeout_s": 0.0}, "Job timeout"),
    ({"search_budget_s": 0.0}, "Search time"),
])
def test_bad_preferences_name_the_setting(changes, words):
    group = ParamGroup()
    with pytest.raises(PreferencesError, match=words):
        Preferences(**changes).save(group)
    assert group.values == {}  # nothing half-written


def test_remote_runtime_is_not_local():
    assert not Preferences(runtime_url="http://10.1.2.3:47615").is_local


# --- request building ----------------------------------------------------------------------------

def test_image_size_reads_png_and_jpeg_headers():
    assert jobs.image_size(_png(32, 24)) == (32, 24)
    assert jobs.image_size(_jpeg(40, 30)) == (40, 30)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", _png()[:40], _png()[:-12], _jpeg()[:20],
                                  b"\x89PNG\r\n\x1a\n"])
def test_corrupt_or_unknown_images_are_refused_before_sending(data):
    with pytest.raises(jobs.RequestError) as caught:
        jobs.GenerateRequest(image=data).to_json()
    assert caught.value.code == protocol.ERROR_BAD_IMAGE


def test_request_body_has_only_what_was_set():
    image = _png()
    body = jobs.GenerateRequest(image=image, instruction="  holes are 6 mm ", n=3, target_size_mm=120,
                                backend="gguf").to_json()
    assert base64.b64decode(body["image"]) == image
    assert body == {"image": body["image"], "n": 3, "instruction": "holes are 6 mm",
                    "target_size_mm": 120.0, "backend": "gguf"}
    plain = jobs.GenerateRequest(image=image, instruction="   ", backend="auto").to_json()
    assert set(plain) == {"image", "n"}
    as_written = jobs.GenerateRequest(image=image, refine=False, search=False).to_json()
    assert as_written["refine"] is False and as_written["search"] is False
    assert "search" not in jobs.GenerateRequest(image=image).to_json()  # the runtime's default: on


def test_the_done_message_says_when_dimensions_were_fitted():
    state = jobs.JobState()
    state.apply_job({"status": protocol.JOB_DONE, "result": {"candidates": [], "refinement": None}})
    assert state.fit_summary() == ""
    state.apply_job({"status": protocol.JOB_DONE, "result": {
        "candidates": [], "refinement": {"changed": 3, "start_score": 0.714, "score": 0.951}}})
    assert state.fit_summary() == "3 dimensions fitted to the picture (similarity 0.71 → 0.95)."
    # With the ranked list and the result's score: the numbers the candidate captions show.
    state.apply_job({"status": protocol.JOB_DONE, "result": {
        "score": 0.97, "candidates": [{"index": 2, "valid": True, "score": 0.88}],
        "refinement": {"changed": 1, "start_score": 0.714, "score": 0.951}}})
    assert state.fit_summary() == "1 dimension fitted to the picture (similarity 0.88 → 0.97)."


def test_request_limits():
    with pytest.raises(jobs.RequestError, match="between 1"):
        jobs.GenerateRequest(image=_png(), n=protocol.MAX_CANDIDATES + 1).to_json()
    with pytest.raises(jobs.RequestError, match="millimetres"):
        jobs.GenerateRequest(image=_png(), target_size_mm=-5).to_json()
    huge = bytearray(_png())
    huge[16:24] = (5000).to_bytes(4, "big") * 2  # header claims 5000×5000
    with pytest.raises(jobs.RequestError) as caught:
        jobs.GenerateRequest(image=bytes(huge)).to_json()
    assert caught.value.code == protocol.ERROR_TOO_LARGE


# --- job state -----------------------------------------------------------------------------------

def _events(job_id="j1"):
    yield {"type": "status", "job_id": job_id, "status": "running", "stage": "generating", "progress": 0.1}
    deltas = ((0, "import cadquery as cq\n"), (1, "import cadquery"), (0, "result = cq.Workplane()"))
    for index, text in deltas:
        yield {"type": "token", "job_id": job_id, "candidate": index, "text": text}
    yield {"type": "candidate", "job_id": job_id, "index": 1, "valid": False, "score": None,
           "error": {"code": "syntax_error", "message": "line 1: invalid syntax"}}
    yield {"type": "candidate", "job_id": job_id, "index": 0, "valid": True, "score": 0.8}
    yield {"type": "status", "job_id": job_id, "status": "running", "stage": "ranking", "progress": 1.7}


def test_events_fold_into_candidates_progress_and_result():
    state = jobs.JobState()
    for event in _events():
        state.apply(event)
    assert state.job_id == "j1" and state.progress == 1.0 and state.stage == "ranking"
    assert not state.finished
    assert state.candidates[0].code == "import cadquery as cq\nresult = cq.Workplane()"
    assert state.candidates[1].error == "line 1: invalid syntax" and state.candidates[1].valid is False
    assert [c.index for c in state.ranked()] == [0, 1]
    assert state.best().brep is None  # no geometry yet

    # The pipeline's GenerateResult: ranked candidates, the winner's (possibly rescaled) code and ExecResult.
    state.apply({"type": "result", "job_id": "j1", "result": {
        "code": "scaled code", "result": {"brep": "BREP", "volume": 6000.0}, "score": 0.8, "backend": "hf",
        "model": "tiny", "scale": 2.0,
        "candidates": [{"index": 0, "code": "final code", "valid": True, "score": 0.8, "error": None},
                       {"index": 1, "code": "", "valid": False, "score": 0.0,
                        "error": {"code": "syntax_error", "message": "invalid syntax", "line": 1}}]}})
    assert state.finished and state.status == protocol.JOB_DONE
    best = state.best()
    assert (best.index, best.code, best.brep, best.score) == (0, "scaled code", "BREP", 0.8)
    assert state.candidates[0].code == "final code"  # the list keeps what the model wrote
    assert state.candidates[1].error == "line 1: invalid syntax"
    assert (state.backend, state.model) == ("hf", "tiny")


def test_result_without_candidate_list_still_gives_a_solid():
    state = jobs.JobState()
    state.apply_job({"status": "done", "result": {"code": "c", "result": {"brep": "B"}, "score": 0.5}})
    best = state.best()
    assert (best.code, best.brep, best.valid) == ("c", "B", True)


def test_best_prefers_higher_scores_and_skips_invalid():
    state = jobs.JobState()
    state.apply_job({"status": "done", "result": {"candidates": [
        {"index": 0, "valid": True, "score": 0.2},
        {"index": 1, "valid": False, "score": 0.99},
        {"index": 2, "valid": True, "score": 0.7}]}})
    assert state.best().index == 2  # no geometry: the panel builds it through /v1/exec


PLAN = {"version": 1, "status": protocol.PLAN_MAPPED, "reasons": [], "parameters": [], "features": [],
        "volume": 6000.0}


def test_the_winner_carries_the_feature_plan_of_the_result():
    state = jobs.JobState()
    state.apply({"type": "candidate", "job_id": "j", "index": 0, "valid": True, "score": 0.9})
    assert state.best().feature_plan is None  # no result yet
    state.apply({"type": "result", "job_id": "j", "result": {
        "code": "c", "score": 0.9, "result": {"brep": "B", "volume": 6000.0, "feature_plan": PLAN},
        "candidates": [{"index": 0, "code": "c", "valid": True, "score": 0.9},
                       {"index": 1, "code": "d", "valid": True, "score": 0.4}]}})
    best = state.best()
    assert (best.index, best.brep, best.feature_plan) == (0, "B", PLAN)
    # Only the winner's plan comes with the result; another candidate gets its own from /v1/exec.
    assert state.candidates[1].feature_plan is None
    lifecycle_needs = lifecycle.PanelController.needs_build
    assert not lifecycle_needs(best, feature_tree=True)
    assert lifecycle_needs(state.candidates[1], feature_tree=False)  # no geometry either way


@pytest.mark.parametrize("plan", [None, "not a plan", []])
def test_a_result_without_a_plan_gives_none(plan):
    state = jobs.JobState()
    exec_result = {"brep": "B"} if plan is None else {"brep": "B", "feature_plan": plan}
    state.apply_job({"status": "done", "result": {"code": "c", "result": exec_result}})
    best = state.best()
    assert best.brep == "B" and best.feature_plan is None
    # A tree wanted but no plan: the panel asks /v1/exec (which always traces) before inserting.
    assert lifecycle.PanelController.needs_build(best, feature_tree=True)
    assert not lifecycle.PanelController.needs_build(best, feature_tree=False)


def test_merge_carries_the_feature_plan():
    slot = jobs.Candidate(index=0, code="c", valid=True)
    slot.merge(jobs.Candidate(index=0, brep="B", feature_plan=PLAN))
    assert (slot.code, slot.brep, slot.feature_plan) == ("c", "B", PLAN)
    slot.merge(jobs.Candidate(index=0, score=0.5))  # a later event without a plan keeps it
    assert slot.feature_plan == PLAN and slot.score == 0.5


def test_the_fallback_sentence_names_the_step():
    message = ("Inserted as a solid with source: line 2: sphere(): sphere() has no PartDesign feature in "
               "CadSnap's mapping")
    text = messages.tree_fallback("plate", message)
    assert text == ("plate was inserted as a solid with its CadQuery source, not as a feature tree: line 2: "
                    "sphere(): sphere() has no PartDesign feature in CadSnap's mapping.")
    assert messages.tree_fallback("plate", message, edited=True).startswith(
        "plate was updated with the new solid as its base feature, not as a feature tree: line 2")
    assert messages.tree_fallback("p", "the runtime sent no feature plan.").endswith(
        "not as a feature tree: the runtime sent no feature plan.")
    assert message.startswith(messages.TREE_FALLBACK_PREFIX)


def test_insert_as_defaults_to_the_feature_tree_and_is_remembered():
    assert Preferences().feature_tree is True
    group = ParamGroup()
    Preferences(feature_tree=False).save(group)
    assert group.values["b", "feature_tree"] is False
    assert Preferences.load(group).feature_tree is False
    assert Preferences.load(ParamGroup()).feature_tree is True


def test_failed_and_cancelled_jobs_explain_themselves():
    failed = jobs.JobState()
    failed.apply({"type": "error", "job_id": "j", "error": {
        "code": protocol.ERROR_ALL_INVALID, "message": "All 4 candidates failed.",
        "detail": {"candidates": [{"index": 0, "code": "x", "valid": False,
                                   "error": {"message": "no result"}}]}}})
    assert failed.finished and failed.best() is None
    assert failed.candidates[0].error == "no result"
    text = messages.explain_code(failed.error_code, failed.error_message, candidates=1).text
    assert text.startswith("None of the 1 programs") and "more candidates" in text

    cancelled = jobs.JobState()
    cancelled.apply({"type": "cancelled", "job_id": "j"})
    assert cancelled.status == protocol.JOB_CANCELLED and "unchanged" in cancelled.error_message


def test_nothing_answering_fits_the_start_the_runtime_setting():
    url = "http://127.0.0.1:47615"
    off = messages.explain_code("runtime_unreachable", runtime_url=url)
    assert "tick “Start the runtime when needed”" in off.text
    # Ticked: never "tick it"; CadSnap starts this runtime, so it stopped, and Try again starts it again.
    on = messages.explain_code("runtime_unreachable", runtime_url=url, start_runtime=True)
    assert "tick" not in on.text and "stopped answering" in on.text and on.actions[0] == messages.ACTION_RETRY
    remote = messages.explain_code("runtime_unreachable", runtime_url="http://10.0.0.5:47615",
                                   start_runtime=True, local=False)
    assert "tick" not in remote.text and "only at a 127.0.0.1 address" in remote.text
    for error in (off, on, remote):
        assert error.text.count(". ") == 0 and error.text.endswith(".")  # one sentence
    unreachable = RuntimeUnreachable("down")
    said = messages.explain_exception(unreachable, url, start_runtime=True, local=True)
    assert said.text == on.text


def test_the_report_line_after_an_insertion_says_what_went_in():
    assert messages.inserted("bracket", 5, "/x/bracket.png") == (
        "inserted bracket: a PartDesign Body with 5 named dimensions in “bracket parameters” from "
        "bracket.png.")
    assert messages.inserted("CadSnap001", None) == "inserted CadSnap001: a solid with its CadQuery source."
    assert messages.inserted("p", 0) == "inserted p: a PartDesign Body."


def test_the_parameter_sheet_writes_clean_numbers_with_their_units():
    from freecad_workbench.sheet_values import parameter_unit, sheet_content, sheet_number

    assert sheet_number(8.875999999999999) == "8.876"
    assert sheet_number(80.0) == "80" and sheet_number(-0.0) == "0" and sheet_number(51.3) == "51.3"
    assert sheet_number(33.33333333333) == "33.333333"
    # FreeCAD keeps 16 significant digits: 8.876 would come back as 8.875999999999999, a fraction not.
    assert f"{8.876:.16g}" == "8.875999999999999"
    assert sheet_content(8.875999999999999) == "=8876 / 1000"
    assert sheet_content(-0.1234567) == "-0.123457"  # exact at 16 digits: as it is
    assert [sheet_content(v) for v in (80.0, 51.3, 4.438, 0.5)] == ["80", "51.3", "4.438", "0.5"]
    assert [parameter_unit(n) for n in ("plate_length", "hole_count_x", "polar_count", "csk_angle",
                                        "hole_diameter")] == ["mm", "", "", "°", "mm"]


def test_a_polyline_profile_gets_its_extents_and_wall_named():
    from freecad_workbench.profile_dims import polyline_dims

    # model_runtime/examples/l_bracket.py's profile: a 25 x 100 L, walls 3 thick, inner corner r 4.5.
    def line(a, b):
        return {"kind": "line", "start": list(a), "end": list(b)}

    edges = [line((0, 0), (25, 0)), line((25, 0), (25, 3)), line((25, 3), (7.5, 3)),
             {"kind": "arc", "center": [7.5, 7.5], "radius": 4.5, "start": [7.5, 3.0], "end": [3.0, 7.5]},
             line((3, 7.5), (3, 100)), line((3, 100), (0, 100)), line((0, 100), (0, 0))]
    params, levels = polyline_dims(edges)
    assert params == [("profile_width", 25.0), ("profile_height", 100.0), ("wall_thickness", 3.0)]
    assert levels[("x", 25.0)] == "profile_width" and levels[("y", 100.0)] == "profile_height"
    assert levels[("x", 3.0)] == levels[("y", 3.0)] == "wall_thickness"
    assert levels[("x", 7.5)] == "wall_thickness + 4.5"  # the rounded inner corner follows the wall
    # Drawn on the negative side: the far edge is minus the extent.
    mirrored = [{**e, "start": [-e["start"][0], e["start"][1]], "end": [-e["end"][0], e["end"][1]],
                 **({"center": [-e["center"][0], e["center"][1]]} if "center" in e else {})} for e in edges]
    _, levels = polyline_dims(mirrored)
    assert levels[("x", -25.0)] == "-profile_width" and levels[("x", -3.0)] == "-wall_thickness"
    # A rectangle drawn as lines has no wall; a slanted line is no polyline part.
    square = [line((0, 0), (10, 0)), line((10, 0), (10, 10)), line((10, 10), (0, 10)), line((0, 10), (0, 0))]
    assert polyline_dims(square)[0] == [("profile_width", 10.0), ("profile_height", 10.0)]
    assert polyline_dims([*square[:3], line((0, 10), (5, 0))]) == ([], {})


def test_containment_is_said_when_it_is_on():
    contained = {"sandbox": {"contained": True, "mechanism": "bubblewrap jail, seccomp, fresh process",
                             "summary": "ok"}}
    assert messages.sandbox_note(contained) == ("Generated code runs contained: bubblewrap jail, seccomp, "
                                                "fresh process.")
    assert messages.sandbox_note({}) == ""
    assert messages.sandbox_note({"sandbox": {"contained": False, "mechanism": "none"}}) == ""


# --- launcher ------------------------------------------------------------------------------------

def test_serve_command_carries_the_preferences():
    prefs = Preferences(runtime_url="http://127.0.0.1:5123", backend="gguf", model_path="/m/a.gguf",
                        mmproj_path="/m/p.gguf")
    assert launcher.serve_command(Path("/venv/bin/python"), prefs) == [
        "/venv/bin/python", "-m", "model_runtime", "serve", "--host", "127.0.0.1", "--port", "5123",
        "--backend", "gguf", "--model", "/m/a.gguf", "--mmproj", "/m/p.gguf"]
    assert "--backend" not in launcher.serve_command(Path("py"), Preferences())
    assert "--allow-uncontained" not in launcher.serve_command(Path("py"), Preferences())
    opted_in = launcher.serve_command(Path("py"), Preferences(allow_uncontained=True))
    assert opted_in[-1] == "--allow-uncontained"


def test_a_runtime_without_a_jail_is_explained_with_its_fix():
    # The runtime's own words for the refusal (model_runtime.sandbox.pool.refusal), as a job error.
    said = ("Generated code cannot be contained here: bubblewrap is not installed. Fix: Install bubblewrap "
            "(Debian/Ubuntu: sudo apt install bubblewrap). To run generated code without containment anyway")
    error = messages.explain_code(protocol.ERROR_UNCONTAINED, said)
    assert error.text.startswith("Generated code cannot be contained here: bubblewrap is not installed.")
    assert "Preferences" in error.text and messages.ACTION_PREFERENCES in error.actions
    line = messages.sandbox_warning({"sandbox": {"contained": False, "refused": True, "summary": said[:69]}})
    assert line.startswith("⛔") and "will not run" in line and "\n" not in line


def test_setup_commands_make_a_venv_then_install(tmp_path):
    steps = launcher.setup_commands(Path("/usr/bin/python3"), tmp_path / "venv", "/addon", extras="cpu")
    python = str(launcher.venv_python(tmp_path / "venv"))
    assert steps[0] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "venv")]
    assert steps[2][-1] == "/addon[cpu]" and steps[2][0] == python
    assert steps[-1] == [python, "-m", "model_runtime", "setup"]
    assert len(launcher.setup_commands(Path("p"), tmp_path, "/addon", build_llama=False)) == 3


def test_runtime_interpreter_prefers_the_configured_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CADSNAP_CACHE_DIR", str(tmp_path))
    assert launcher.runtime_interpreter(Preferences()) is None
    venv_python = launcher.venv_python(launcher.default_venv_dir())
    venv_python.parent.mkdir(parents=True)
    venv_python.touch()
    assert launcher.runtime_interpreter(Preferences()) == venv_python
    assert launcher.runtime_interpreter(Preferences(interpreter="/x/python")) == Path("/x/python")


def test_find_base_python_finds_a_real_311():
    found = launcher.find_base_python()
    assert launcher.python_version(found) >= launcher.MIN_RUNTIME_PYTHON
    with pytest.raises(launcher.RuntimeNotInstalled, match="Python 3.11"):
        launcher.find_base_python("/nonexistent/python")


def test_run_steps_streams_lines_and_names_the_failing_step():
    lines: list[str] = []
    ok = [sys.executable, "-c", "print('one'); print('two')"]
    launcher.run_steps([ok], lines.append)
    assert lines[1:] == ["one", "two"] and lines[0].startswith("[1/1]")
    with pytest.raises(launcher.LauncherError, match=r"Step 2 failed \(exit code 3\)"):
        launcher.run_steps([ok, [sys.executable, "-c", "raise SystemExit(3)"]], lines.append)


def test_run_steps_cancel_stops_a_silent_step():
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(launcher.LauncherError, match="cancelled"):
        launcher.run_steps([[sys.executable, "-c", "import time; time.sleep(30)"]], lambda _: None, cancel)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_manager_refuses_to_start_when_told_not_to(tmp_path):
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}", start_runtime=False)
    with pytest.raises(RuntimeUnreachable, match="No CadSnap runtime answers"):
        launcher.RuntimeManager(tmp_path).ensure(prefs)
    remote = Preferences(runtime_url="http://192.0.2.1:1", connect_timeout_s=0.2)
    with pytest.raises(ClientError):
        launcher.RuntimeManager(tmp_path).ensure(remote)


def test_manager_says_how_to_install_when_nothing_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("CADSNAP_CACHE_DIR", str(tmp_path))
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(launcher.RuntimeNotInstalled, match="Set up runtime"):
        launcher.RuntimeManager(tmp_path).ensure(prefs)


def test_manager_reports_a_runtime_that_dies_while_starting(tmp_path, monkeypatch):
    # The system Python has no runtime installed: `-m model_runtime serve` really fails at once.
    system_python = launcher.find_base_python()
    monkeypatch.chdir(tmp_path)  # keep this checkout's model_runtime off the child's path
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}", interpreter=str(system_python),
                        startup_timeout_s=30)
    manager = launcher.RuntimeManager(tmp_path)
    statuses: list[str] = []
    with pytest.raises(launcher.RuntimeStartFailed, match="exited") as caught:
        manager.ensure(prefs, statuses.append)
    assert "No module named model_runtime" in str(caught.value)
    assert statuses and manager.process is None


def _stand_in_runtime(tmp_path: Path) -> Path:
    """An executable taking serve's command line that answers GET /v1/health with a static file: a
    real child process and real HTTP, to test the manager's own start/restart/stop logic quickly."""
    site = tmp_path / "site"
    (site / "v1").mkdir(parents=True)
    (site / "v1" / "health").write_text('{"status": "ok", "backend_state": "ready"}')
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "--port" ]; do shift; done\n'
        f'exec "{sys.executable}" -m http.server "$2" --bind 127.0.0.1 --directory "{site}"\n')
    script.chmod(0o755)
    return script


def test_manager_starts_reuses_restarts_on_new_settings_and_stops(tmp_path):
    interpreter = _stand_in_runtime(tmp_path)
    prefs = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}", interpreter=str(interpreter),
                        startup_timeout_s=20)
    manager = launcher.RuntimeManager(tmp_path / "logs")
    try:
        _, health = manager.ensure(prefs)
        first = manager.process
        assert health["status"] == "ok" and first.running
        manager.ensure(prefs)
        assert manager.process is first  # healthy and same settings: reused
        moved = Preferences(runtime_url=f"http://127.0.0.1:{_free_port()}", interpreter=str(interpreter),
                            model_path="/models/other.gguf", startup_timeout_s=20)
        statuses: list[str] = []
        _, health = manager.ensure(moved, statuses.append)
        assert manager.process is not first and not first.running  # old one stopped, not orphaned
        assert "--model" in manager.process.command and "Restarting" in statuses[0]
    finally:
        manager.stop()
    assert manager.process is None
    with pytest.raises(RuntimeUnreachable):
        RuntimeClient(moved.runtime_url, timeout_s=1).health()


# --- scale and placement from a 3D-view capture ---------------------------------------------------

def test_a_capture_gives_its_size_and_a_place_beside_the_part():
    from freecad_workbench import placement

    part = (0.0, 0.0, 0.0, 60.0, 40.0, 10.0)
    assert placement.union([]) is None and placement.target_size(None) is None
    assert placement.union([part, (-5.0, 2.0, 0.0, 10.0, 50.0, 3.0)]) == (-5.0, 0.0, 0.0, 60.0, 50.0, 10.0)
    assert placement.target_size(part) == 60.0
    new = (-30.0, -20.0, -5.0, 30.0, 20.0, 5.0)  # a solid centred on the origin, inside the part
    assert placement.overlaps(part, new)
    dx, dy, dz = placement.beside(part, new)
    moved = (new[0] + dx, new[1] + dy, new[2] + dz, new[3] + dx, new[4] + dy, new[5] + dz)
    assert not placement.overlaps(part, moved)
    assert moved[0] == 60.0 + 12.0 and moved[1] == 0.0 and moved[2] == 0.0  # a 20 % gap, fronts aligned
