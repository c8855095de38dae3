"""The workbench's settings: defaults, validation, and storage in FreeCAD's parameter tree.

Stored under ``User parameter:BaseApp/Preferences/Mod/CadSnap``. ``load``/``save`` take any object
with FreeCAD's ParameterGrp methods (GetString/SetString, GetInt/SetInt, GetFloat/SetFloat,
GetBool/SetBool), so the logic is tested without FreeCAD.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass

from model_runtime import protocol

PARAM_PATH = "User parameter:BaseApp/Preferences/Mod/CadSnap"
BACKENDS = ("auto", "gguf", "hf", "remote")  # what `model_runtime serve --backend` takes
# What OK puts in the document, as the panel and the preference page list it: index 0 is the feature
# tree (``Preferences.feature_tree`` on), index 1 the solid carrying its CadQuery source.
INSERT_AS = ("Feature tree (PartDesign Body)", "Solid with source")


class PreferencesError(ValueError):
    """A setting has a value the workbench cannot use; the message names the setting."""


@dataclass
class Preferences:
    # Where the runtime answers; a loopback URL may be started by the workbench.
    runtime_url: str = protocol.base_url()
    # Python of the runtime's venv; empty means the venv that "Set up runtime" creates.
    interpreter: str = ""
    start_runtime: bool = True
    backend: str = "auto"
    model_path: str = ""
    mmproj_path: str = ""
    adapter_path: str = ""  # a LoRA adapter folder for the hf backend
    remote_url: str = ""
    candidates: int = 4
    capture_size: int = 512
    connect_timeout_s: float = 5.0
    startup_timeout_s: float = 180.0
    job_timeout_s: float = 900.0
    exec_timeout_s: float = 30.0
    # Insert as a PartDesign Body built from the traced plan (else the solid with source); the panel's
    # "Insert as" starts here, so a person who prefers solids sets it once.
    feature_tree: bool = True
    # Run generated code even where the runtime has no operating-system jail (no bubblewrap, macOS,
    # Windows): it then runs with the user's rights. Off unless the user turns it on knowingly.
    allow_uncontained: bool = False

    def validated(self) -> Preferences:
        """A copy with whitespace trimmed; PreferencesError names the first bad setting."""
        prefs = dataclasses.replace(
            self, runtime_url=self.runtime_url.strip().rstrip("/"), interpreter=self.interpreter.strip(),
            backend=self.backend.strip() or "auto", model_path=self.model_path.strip(),
            mmproj_path=self.mmproj_path.strip(), adapter_path=self.adapter_path.strip(),
            remote_url=self.remote_url.strip())
        url = urllib.parse.urlsplit(prefs.runtime_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise PreferencesError(f"Runtime URL {prefs.runtime_url!r} is not an http:// address.")
        try:
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise PreferencesError(f"Runtime URL {prefs.runtime_url!r} has a bad port.") from None
        if prefs.backend not in BACKENDS:
            raise PreferencesError(f"Backend {prefs.backend!r} is not one of {', '.join(BACKENDS)}.")
        if prefs.backend == "remote" and not prefs.remote_url:
            raise PreferencesError("The remote backend needs the remote server's URL.")
        if not 1 <= prefs.candidates <= protocol.MAX_CANDIDATES:
            raise PreferencesError(f"Candidates must be between 1 and {protocol.MAX_CANDIDATES}.")
        if not 64 <= prefs.capture_size <= 2048:
            raise PreferencesError("Capture size must be between 64 and 2048 pixels.")
        for name in ("connect_timeout_s", "startup_timeout_s", "job_timeout_s", "exec_timeout_s"):
            if not getattr(prefs, name) > 0:
                raise PreferencesError(f"{name.replace('_s', '').replace('_', ' ').capitalize()} "
                                       "must be more than 0 seconds.")
        return prefs

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.runtime_url).hostname or protocol.DEFAULT_HOST

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.runtime_url).port or protocol.DEFAULT_PORT

    @property
    def is_local(self) -> bool:
        """Only a loopback runtime may be started (and trusted with a token file) by the workbench."""
        return self.host in ("127.0.0.1", "localhost", "::1")

    @classmethod
    def load(cls, group) -> Preferences:
        """Read from a ParameterGrp; missing entries take the defaults. Not validated."""
        values = {}
        for spec in dataclasses.fields(cls):
            default = spec.default
            if isinstance(default, bool):
                values[spec.name] = bool(group.GetBool(spec.name, default))
            elif isinstance(default, int):
                values[spec.name] = int(group.GetInt(spec.name, default))
            elif isinstance(default, float):
                values[spec.name] = float(group.GetFloat(spec.name, default))
            else:
                values[spec.name] = str(group.GetString(spec.name, default))
        return cls(**values)

    def save(self, group) -> None:
        """Validate, then write every setting to a ParameterGrp."""
        prefs = self.validated()
        for spec in dataclasses.fields(prefs):
            value = getattr(prefs, spec.name)
            if isinstance(value, bool):
                group.SetBool(spec.name, value)
            elif isinstance(value, int):
                group.SetInt(spec.name, value)
            elif isinstance(value, float):
                group.SetFloat(spec.name, value)
            else:
                group.SetString(spec.name, value)


def freecad_group():
    """The workbench's parameter group (inside FreeCAD only)."""
    import FreeCAD

    return FreeCAD.ParamGet(PARAM_PATH)


def current() -> Preferences:
    """The saved preferences, falling back to defaults for any setting that does not validate."""
    prefs = Preferences.load(freecad_group())
    try:
        return prefs.validated()
    except PreferencesError as error:
        import FreeCAD

        FreeCAD.Console.PrintWarning(f"CadSnap: {error} Using the default settings until it is fixed.\n")
        return Preferences()
