"""What the workbench tells a person, without FreeCAD or Qt: runtime status lines and error sentences.

Every error a user can meet becomes a :class:`UserError`: one sentence saying what happened and what
fixes it, plus the buttons that carry out the fix. The panel shows one at a time, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from model_runtime import protocol

from . import client as client_module
from .launcher import LauncherError, RuntimeNotInstalled, RuntimeStartFailed

# Buttons the panel knows how to carry out.
ACTION_SETUP = "setup_runtime"
ACTION_PREFERENCES = "open_preferences"
ACTION_RETRY = "retry"
ACTION_LABELS = {ACTION_SETUP: "Set up runtime…", ACTION_PREFERENCES: "Open preferences…",
                 ACTION_RETRY: "Try again"}


@dataclass(frozen=True)
class UserError:
    """One sentence (what happened; what fixes it) and the buttons that help, in order."""

    text: str
    actions: tuple[str, ...] = ()
    code: str = ""  # the protocol or client error code it came from, for tests and logs


def _first_line(text: str, limit: int = 160) -> str:
    line = next((part.strip() for part in reversed(text.strip().splitlines()) if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def bad_picture(detail: str = "") -> UserError:
    why = f" ({detail})" if detail else ""
    return UserError(f"This picture cannot be read{why}; capture it again or open another image file.",
                     code=protocol.ERROR_BAD_IMAGE)


def explain_exception(error: BaseException, runtime_url: str = "", interpreter: str = "", *,
                      start_runtime: bool = False, local: bool = True) -> UserError:
    """The sentence for anything the client or the launcher raised. ``start_runtime`` and ``local``:
    whether CadSnap may start the runtime itself (the preference, and a loopback URL)."""
    url = runtime_url or "the runtime URL"
    if isinstance(error, RuntimeNotInstalled):
        return UserError("CadSnap's runtime is not installed yet; press Set up runtime… to install it "
                         "(once, a few minutes), or set its Python in Preferences.",
                         (ACTION_SETUP, ACTION_PREFERENCES), "runtime_not_installed")
    if isinstance(error, RuntimeStartFailed):
        text = str(error)
        if "No module named model_runtime" in text or "No module named 'model_runtime'" in text:
            python = interpreter or "the runtime's Python"
            return UserError(f"The Python chosen for the runtime ({python}) does not have CadSnap's runtime "
                             "installed; press Set up runtime… or pick another Python in Preferences.",
                             (ACTION_SETUP, ACTION_PREFERENCES), "runtime_not_installed")
        if "did not answer within" in text:
            return UserError(f"The runtime did not finish starting in time; raise the start-up timeout in "
                             f"Preferences, or read its log ({_log_hint(text)}).",
                             (ACTION_PREFERENCES, ACTION_RETRY), "runtime_start_timeout")
        if text.startswith("Cancelled"):
            return UserError("Cancelled while the runtime was starting; the document is unchanged.",
                             code=protocol.ERROR_CANCELLED)
        return UserError(f"The runtime stopped while starting (its last words: “{_first_line(text)}”); "
                         "check the runtime's Python in Preferences or run Set up runtime… again.",
                         (ACTION_PREFERENCES, ACTION_SETUP), "runtime_start_failed")
    if isinstance(error, LauncherError):
        return UserError(f"{str(error).rstrip('.')}.", (ACTION_PREFERENCES,), "launcher")
    if isinstance(error, client_module.ClientError):
        return explain_code(error.code, error.message, runtime_url=url, detail=error.detail,
                            start_runtime=start_runtime, local=local)
    return UserError(f"CadSnap failed unexpectedly ({type(error).__name__}: {error}); the document is "
                     "unchanged, and the Report view has the details.", code=protocol.ERROR_INTERNAL)


def explain_code(code: str | None, message: str | None = None, *, runtime_url: str = "the runtime URL",
                 detail: dict[str, Any] | None = None, candidates: int = 0, start_runtime: bool = False,
                 local: bool = True) -> UserError:
    """The sentence for an error code from the runtime (an HTTP error body or a failed job)."""
    message = (message or "").strip()
    if code == protocol.ERROR_UNAUTHORIZED:
        return UserError(f"A program answers at {runtime_url} but refused CadSnap's access token (it is "
                         "another user's or an old runtime); stop it, or give the Runtime URL another "
                         "port in Preferences.", (ACTION_PREFERENCES,), code)
    if code == client_module.ERROR_UNREACHABLE and start_runtime and local:
        # CadSnap starts this runtime itself: it was running, or was started, and is gone now.
        return UserError(f"The CadSnap runtime at {runtime_url} stopped answering; press Try again to start "
                         "it again, and if it stops again, read runtime.log in CadSnap's cache folder.",
                         (ACTION_RETRY, ACTION_PREFERENCES), code)
    if code == client_module.ERROR_UNREACHABLE and start_runtime:
        return UserError(f"No CadSnap runtime answers at {runtime_url}, and CadSnap starts one itself "
                         "only at a 127.0.0.1 address; start it on that machine with “python -m "
                         "model_runtime serve”, or set a 127.0.0.1 Runtime URL in Preferences.",
                         (ACTION_PREFERENCES, ACTION_RETRY), code)
    if code == client_module.ERROR_UNREACHABLE:
        return UserError(f"No CadSnap runtime answers at {runtime_url}; start one with “python -m "
                         "model_runtime serve”, or tick “Start the runtime when needed” in Preferences.",
                         (ACTION_PREFERENCES, ACTION_RETRY), code)
    if code == client_module.ERROR_CLIENT_TIMEOUT:
        return UserError("The runtime stopped answering in time; raise the timeouts in Preferences or "
                         "try again.", (ACTION_PREFERENCES, ACTION_RETRY), code)
    if code == protocol.ERROR_BAD_IMAGE:
        return bad_picture()
    if code == protocol.ERROR_TOO_LARGE:
        return UserError("The picture is larger than the runtime takes; capture a smaller region or "
                         "lower the capture size in Preferences.", (ACTION_PREFERENCES,), code)
    if code == protocol.ERROR_NO_BACKEND:
        return UserError("The runtime has no model to generate with; choose a model in Preferences, or "
                         "press Set up runtime… to install the built-in one.",
                         (ACTION_PREFERENCES, ACTION_SETUP), code)
    if code == protocol.ERROR_UNCONTAINED:
        cause = _first_line(message).split(" Fix:")[0] if message else "no sandbox jail works here."
        return UserError(f"{cause} So generated code does not run; install bubblewrap, or tick “Run "
                         "generated code even without a sandbox jail” in Preferences (it then runs with "
                         "your user's rights).", (ACTION_PREFERENCES,), code)
    if code == protocol.ERROR_ALL_INVALID:
        tried = f"{candidates} programs" if candidates else "programs"
        return UserError(f"None of the {tried} the model wrote built a solid; try more candidates, an "
                         "instruction, or a cleaner picture.", (ACTION_RETRY,), code)
    if code == protocol.ERROR_TIMEOUT:
        return UserError("The job ran out of time; raise the generation timeout in Preferences or ask "
                         "for fewer candidates.", (ACTION_PREFERENCES,), code)
    if code == protocol.ERROR_CANCELLED:
        return UserError("Cancelled; the document is unchanged.", code=code)
    if code == protocol.ERROR_BAD_REQUEST and "backend" in message:
        return UserError("The running runtime serves another backend than Preferences ask for; restart "
                         "FreeCAD's runtime or set the backend to auto in Preferences.",
                         (ACTION_PREFERENCES,), code)
    said = f" (it said: “{_first_line(message)}”)" if message else ""
    return UserError(f"The runtime could not finish the job{said}; try again, and if it repeats, read the "
                     "runtime's log.", (ACTION_RETRY,), code or protocol.ERROR_INTERNAL)


# How insert_part's message starts when a feature tree fell back to the solid (insert.py writes it).
TREE_FALLBACK_PREFIX = "Inserted as a solid with source: "


def tree_fallback(label: str, message: str, edited: bool = False) -> str:
    """The one sentence (Report view, status bar) when a feature tree was asked for and a solid with
    source went in instead (after Edit CadQuery: the Body holds the solid as its base feature);
    ``message`` is ``insert.insert_plan``'s ("Inserted as a solid with source: <which step could not
    become a feature, or why the Body was not kept>")."""
    why = message.strip()
    if why.startswith(TREE_FALLBACK_PREFIX.strip()):
        why = why[len(TREE_FALLBACK_PREFIX.strip()):].strip()
    done = ("updated with the new solid as its base feature" if edited
            else "inserted as a solid with its CadQuery source")
    return (f"{label} was {done}, not as a feature tree: "
            f"{why.rstrip('.') or 'the program could not be mapped to features'}.")


def inserted(label: str, parameters: int | None, image_path: str = "") -> str:
    """The Report view's line after a part went in: what it is and where it came from.
    ``parameters``: the Body's named dimensions, None for a solid with source."""
    if parameters is None:
        what = "a solid with its CadQuery source"
    elif parameters == 0:
        what = "a PartDesign Body"
    else:
        what = (f"a PartDesign Body with {parameters} named dimension{'s' if parameters != 1 else ''} "
                f"in “{label} parameters”")
    source = f" from {PurePath(image_path).name}" if image_path else ""
    return f"inserted {label}: {what}{source}."


def tree_fallback_short(label: str, edited: bool = False) -> str:
    """The status bar's version of :func:`tree_fallback`: short enough not to be cut off there."""
    done = "updated" if edited else "inserted"
    return f"{label} was {done} as a solid, not as a feature tree; the Report view says which step."


def _log_hint(text: str) -> str:
    return text.rsplit("Its log:", 1)[-1].strip() if "Its log:" in text else "runtime.log"


# --- runtime status -----------------------------------------------------------------------------------

PHASE_CHECKING = "checking"
PHASE_STARTING = "starting"
PHASE_LOADING = "loading"
PHASE_READY = "ready"
PHASE_NO_MODEL = "no_model"
PHASE_DOWN = "down"


def health_phase(health: dict[str, Any]) -> str:
    state = health.get("backend_state", "ready")
    if state == "loading":
        return PHASE_LOADING
    if state in ("none", "unavailable"):
        return PHASE_NO_MODEL
    return PHASE_READY


def describe_health(health: dict[str, Any]) -> str:
    """The runtime line from GET /v1/health (short: errors have their own place in the panel)."""
    phase = health_phase(health)
    if phase == PHASE_LOADING:
        return "starting — loading the model; a job waits for it"
    if phase == PHASE_NO_MODEL:
        return "up, but without a model"
    backend, model = health.get("backend") or "no backend", health.get("model") or "no model"
    return f"ready — {backend}, {model}"


def sandbox_note(health: dict[str, Any]) -> str:
    """One line when the runtime says generated code runs contained (what contains it), else ""."""
    sandbox = health.get("sandbox")
    if not isinstance(sandbox, dict) or sandbox.get("contained") is not True:
        return ""
    mechanism = str(sandbox.get("mechanism") or "").strip().rstrip(".")
    return "Generated code runs contained" + (f": {mechanism}." if mechanism else ".")


def sandbox_warning(health: dict[str, Any]) -> str:
    """One line when the runtime says generated code runs without OS containment, else ""."""
    sandbox = health.get("sandbox")
    if not isinstance(sandbox, dict) or sandbox.get("contained") is not False:
        return ""
    summary = str(sandbox.get("summary") or "").strip().rstrip(".")
    if sandbox.get("refused"):
        return (f"⛔ {summary}: generated code will not run. Install bubblewrap, or allow it in "
                "Preferences.")
    return ("⚠ Generated code runs without operating-system containment"
            + (f" ({summary})" if summary else "") + ".")
