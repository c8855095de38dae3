"""``python -m model_runtime doctor``: what is installed and usable, and the fix for each missing piece."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

OK, MISSING, WARN, INFO = "ok", "missing", "warn", "info"
# Where Debian/Ubuntu, Fedora, Arch, the AppImage and macOS put FreeCAD's Python modules.
FREECAD_LIB_DIRS = (
    "/usr/lib/freecad-python3/lib",
    "/usr/lib/freecad/lib",
    "/usr/lib64/freecad/lib",
    "/usr/local/lib/freecad/lib",
    "/Applications/FreeCAD.app/Contents/Resources/lib",
)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    core: bool = False  # the runtime is unusable without it


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="show what is installed and usable, with the fix for each missing piece",
        description="Check the pieces CadSnap uses: cadquery and the sandbox (core), llama-cpp-python "
        "(and whether it is CadSnap's patched build), torch/CUDA, bitsandbytes, transformers, FreeCAD, "
        "and the models found. Exit status 0 when the core works.",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="skip starting a sandbox worker (faster; checks only the cadquery import)",
    )
    parser.set_defaults(run=run)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check(
        "python",
        OK if ok else MISSING,
        f"{platform.python_version()} ({sys.executable})",
        "" if ok else "use Python 3.11 or newer",
        core=True,
    )


def check_cadquery(run_sandbox: bool) -> list[Check]:
    found = _version("cadquery")
    if found is None:
        return [
            Check("cadquery", MISSING, "not installed", "pip install cadquery (or: pip install -e .)", True)
        ]
    checks = [Check("cadquery", OK, found, core=True), check_containment()]
    if not run_sandbox:
        return checks
    from model_runtime.sandbox import SandboxError, SandboxPool

    code = "import cadquery as cq\nresult = cq.Workplane().box(1, 2, 3)\n"
    try:
        with SandboxPool(workers=1, timeout_s=60) as pool:
            res = pool.run(code)
        ok = abs(res.volume - 6.0) < 1e-6
        checks.append(
            Check(
                "sandbox",
                OK if ok else MISSING,
                f"ran a test part in {res.elapsed_s * 1000:.0f} ms" if ok else f"wrong volume {res.volume}",
                "" if ok else "report this as a bug",
                True,
            )
        )
    except SandboxError as exc:
        checks.append(
            Check(
                "sandbox",
                MISSING,
                exc.message,
                "check that cadquery imports: python -c 'import cadquery'",
                True,
            )
        )
    return checks


def check_containment() -> Check:
    """Whether generated code is contained by the operating system here, and how to get there."""
    from model_runtime.sandbox.jail import ALLOW_UNCONTAINED_ENV, containment, uncontained_allowed

    found = containment()
    if found.contained:
        return Check("containment", OK, f"{found.mechanism}: {found.summary}", core=True)
    if uncontained_allowed():
        # The user's informed choice: generated code runs, and doctor keeps saying what that means.
        return Check("containment", WARN, f"{found.summary} You allowed generated code to run anyway "
                     f"({ALLOW_UNCONTAINED_ENV}), with your user's rights.", found.fix)
    return Check(
        "containment",
        MISSING,
        f"{found.summary} Generated code will not run.",
        f"{found.fix} (or, knowingly: {ALLOW_UNCONTAINED_ENV}=1 / --allow-uncontained)",
        core=True,
    )


def check_llama() -> Check:
    found = _version("llama-cpp-python")
    if found is None:
        return Check(
            "llama-cpp-python",
            MISSING,
            "not installed (CPU inference with GGUF models)",
            "python -m model_runtime setup",
        )
    if "cadsnap" not in found:
        return Check(
            "llama-cpp-python",
            WARN,
            f"{found}: not CadSnap's patched build (LLaVA images misread)",
            "python -m model_runtime setup",
        )
    return Check("llama-cpp-python", OK, f"{found} (patched)")


def check_torch() -> list[Check]:
    found = _version("torch")
    if found is None:
        return [
            Check(
                "torch",
                MISSING,
                "not installed (GPU inference and training)",
                'pip install -e ".[gpu]" (a CUDA build from pytorch.org for an NVIDIA GPU)',
            )
        ]
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        cuda = Check("cuda", OK, f"{name}, CUDA {torch.version.cuda}")
    else:
        cuda = Check(
            "cuda",
            INFO,
            "no CUDA device: the hf backend runs on CPU (slow); use a GGUF model",
            "for GPU inference install a CUDA build of torch on a machine with an NVIDIA GPU",
        )
    return [Check("torch", OK, found), cuda]


def check_package(name: str, purpose: str, extra: str) -> Check:
    found = _version(name)
    if found is None:
        return Check(name, MISSING, f"not installed ({purpose})", f'pip install -e ".[{extra}]"')
    return Check(name, OK, found)


def check_freecad() -> Check:
    exe = shutil.which("freecadcmd") or shutil.which("FreeCADCmd") or shutil.which("freecad")
    libs = [d for d in FREECAD_LIB_DIRS if Path(d, "FreeCAD.so").exists() or Path(d, "FreeCAD.pyd").exists()]
    if importlib.util.find_spec("FreeCAD") is not None:
        libs.insert(0, "importable")
    if exe or libs:
        where = ", ".join(filter(None, [exe, *libs]))
        return Check("freecad", OK, f"found: {where}")
    return Check(
        "freecad",
        MISSING,
        "not found (only the workbench needs it; the runtime does not)",
        "install FreeCAD 0.20+ (apt install freecad, or freecad.org), then add this folder as a workbench",
    )


def find_models() -> list[Path]:
    from model_runtime.protocol import cache_dir

    roots = [Path(__file__).resolve().parent.parent / "models", cache_dir() / "models"]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += sorted(p for p in root.rglob("*.gguf") if not p.name.lower().startswith("mmproj"))
            found += sorted(
                p.parent
                for p in root.rglob("config.json")
                if (p.parent / "tokenizer.json").exists() or any(p.parent.glob("*.safetensors"))
            )
    return found


def check_models() -> Check:
    from model_runtime.protocol import cache_dir

    models = find_models()
    if models:
        return Check(
            "models", OK, "; ".join(str(m) for m in models[:5]) + (" ..." if len(models) > 5 else "")
        )
    return Check(
        "models",
        MISSING,
        f"no model found in model_runtime/models/ or {cache_dir() / 'models'}",
        f"put a GGUF model and its mmproj*.gguf in {cache_dir() / 'models'} (see README: models), "
        "or pass --model to generate/serve",
    )


def check_server() -> Check:
    from model_runtime import protocol

    token = protocol.token_path()
    info = protocol.config_dir() / "server.json"
    running = ""
    if info.exists():
        try:
            running = f"; a server wrote {info}: {json.loads(info.read_text())['url']}"
        except (OSError, ValueError, KeyError):
            running = f"; unreadable {info}"
    if token.exists():
        return Check("server token", OK, f"{token}{running}")
    return Check("server token", INFO, f"{token} is created on the first `serve`{running}")


def collect(run_sandbox: bool = True) -> list[Check]:
    checks = [
        check_python(),
        *check_cadquery(run_sandbox),
        check_llama(),
        *check_torch(),
        check_package("transformers", "hf backend, training", "gpu"),
        check_package("peft", "LoRA adapters", "gpu"),
        check_package("bitsandbytes", "4-bit models on CUDA", "gpu"),
        check_freecad(),
        check_models(),
        check_server(),
    ]
    return checks


def run(args: argparse.Namespace) -> int:
    checks = collect(run_sandbox=not args.no_sandbox)
    core_ok = all(c.status == OK for c in checks if c.core)
    if args.json:
        print(json.dumps({"core_ok": core_ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            status = f"{c.status} (core)" if c.core and c.status != OK else c.status
            print(f"{c.name:<{width}}  {status:<7}  {c.detail}")
            if c.fix and c.status != OK:
                print(f"{'':<{width}}  {'':<7}  fix: {c.fix}")
        print()
        print(
            "core: ok (exec and serve work)"
            if core_ok
            else "core: NOT working; fix the lines marked (core) above"
        )
    return 0 if core_ok else 1
