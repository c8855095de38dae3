"""``python -m model_runtime``: help for every command, exec end to end, doctor, serve, generate fallback."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model_runtime import cli

ROOT = Path(__file__).resolve().parent.parent
PART = """\
import cadquery as cq
result = cq.Workplane("XY").box(10, 20, 5).faces(">Z").workplane().hole(4)
"""


def runtime(*args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 120):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "model_runtime", *args],
        cwd=ROOT,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=full_env,
    )


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("generate", "exec", "serve", "doctor"):
        assert name in out


@pytest.mark.parametrize("command", ["exec", "serve", "doctor", "generate"])
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def _hide_module(monkeypatch, name: str, error: BaseException | None = None):
    real = importlib.import_module

    def fake(module_name, *args, **kwargs):
        if module_name == f"model_runtime.commands.{name}":
            raise error or ModuleNotFoundError(f"No module named {module_name!r}", name=module_name)
        return real(module_name, *args, **kwargs)

    monkeypatch.setattr(cli.importlib, "import_module", fake)


def test_generate_without_a_backend_module_says_so(monkeypatch, capsys):
    _hide_module(monkeypatch, "generate")
    assert cli.main(["generate", "part.png"]) == 2
    assert "no model backend is available" in capsys.readouterr().err


def test_a_broken_command_does_not_break_the_cli(monkeypatch, capsys):
    _hide_module(monkeypatch, "doctor", ImportError("cannot import name 'x'"))
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "unavailable" in capsys.readouterr().out
    assert cli.main(["doctor"]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_exec_writes_step_stl_and_brep(tmp_path):
    import cadquery as cq

    src = tmp_path / "part.py"
    src.write_text(PART)
    outs = [tmp_path / "out" / name for name in ("part.step", "part.stl", "part.brep")]
    proc = runtime("exec", str(src), *[arg for p in outs for arg in ("-o", str(p))])
    assert proc.returncode == 0, proc.stderr
    assert "volume" in proc.stdout and "faces    7" in proc.stdout
    expected = 10 * 20 * 5 - 3.141592653589793 * 4 * 5
    assert cq.importers.importStep(str(outs[0])).val().Volume() == pytest.approx(expected, rel=1e-6)
    assert outs[1].stat().st_size > 84
    assert cq.Shape.importBrep(str(outs[2])).Volume() == pytest.approx(expected, rel=1e-9)


def test_exec_reports_typed_errors_and_writes_nothing(tmp_path):
    out = tmp_path / "bad.step"
    proc = runtime("exec", "-", "-o", str(out), stdin="import os\nresult = os.system('id')\n")
    assert proc.returncode == 1
    assert "policy_violation" in proc.stderr and "line 1" in proc.stderr
    assert not out.exists()
    proc = runtime("exec", "-", "--json", stdin="import cadquery as cq\nr = cq.Workplane().box(1, 1, 1)\n")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "no_result"
    assert runtime("exec", str(tmp_path / "missing.py")).returncode == 2
    assert runtime("exec", "-", "-o", str(tmp_path / "x.obj"), stdin=PART).returncode == 2


def test_doctor_reports_core_ok():
    proc = runtime("doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["core_ok"] is True
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["sandbox"]["status"] == "ok"
    for name in ("llama-cpp-python", "torch", "bitsandbytes", "transformers", "freecad", "models"):
        assert name in by_name
        if by_name[name]["status"] != "ok":
            assert by_name[name]["fix"], name


def test_serve_refuses_non_loopback():
    proc = runtime("serve", "--host", "0.0.0.0", timeout=60)
    assert proc.returncode == 2
    assert "loopback" in proc.stderr


def test_serve_publishes_itself_and_cleans_up(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CADSNAP_CONFIG_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_runtime",
            "serve",
            "--port",
            "0",
            "--backend",
            "none",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    info = tmp_path / "server.json"
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "server.json never appeared"
            time.sleep(0.1)
        url = json.loads(info.read_text())["url"]
        token = (tmp_path / "token").read_text().strip()
        health = httpx.get(f"{url}/v1/health", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert httpx.get(f"{url}/v1/health", timeout=30).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert not info.exists()
