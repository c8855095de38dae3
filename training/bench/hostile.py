"""Hostile and ordinary programs mixed, through a real ``serve`` process: none lost, every ordinary one ok.

    python -m training.bench.hostile --jobs 1000 --out out/bench

Starts ``python -m model_runtime serve --backend none`` on a free loopback port with a private config
folder, sends ``--jobs`` programs to ``/v1/exec`` from several client threads (ordinary parts and
every kind of hostile code the policy or the sandbox must stop), and checks each answer: an ordinary
part must come back with its exact volume, a hostile one with a typed error (HTTP 422), never a
500, a dropped connection or a wrong solid. Writes ``hostile.md`` and ``hostile.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model_runtime import protocol

ORDINARY = {
    "box": ("import cadquery as cq\nresult = cq.Workplane().box({a}, 2, 3)\n", lambda a: a * 6.0),
    "plate with hole": (
        "import cadquery as cq\n"
        "result = cq.Workplane().box({a} + 5, 10, 2).faces('>Z').workplane().hole(2)\n",
        None,
    ),
}
HOSTILE = {
    "infinite loop": "while True:\n    pass\n",
    "memory bomb": "x = []\nwhile True:\n    x.append(' ' * 10**7)\n",
    "huge allocation": "x = [0] * (10**10)\n",
    "recursion": "def f(n):\n    return f(n + 1)\nf(0)\n",
    "print flood": "s = 'x' * 100000\nwhile True:\n    print(s)\n",
    "lone surrogate": "import cadquery as cq\nprint(chr(0xD800))\nresult = cq.Workplane().box(1, 1, 1)\n",
    "huge message": "raise ValueError(chr(0xDFFF) * 1000000)\n",
    "open a file": "open('/etc/passwd').read()\n",
    "fork": "import os\nos.fork()\n",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 22))\n",
    "introspection": "x = ().__class__.__bases__[0].__subclasses__()\n",
    "native object": "import cadquery as cq\np = cq.Workplane().box(1, 1, 1).val().toVtkPolyData()\n",
    "builtin callback": "import cadquery as cq\ncq.Workplane().box(1, 1, 1).each(print)\n",
    "syntax error": "import cadquery as cq\nresult = cq.Workplane(\n",
    "no result": "import cadquery as cq\npart = cq.Workplane().box(1, 1, 1)\n",
    "two solids": "import cadquery as cq\nresult = cq.Workplane().pushPoints([(0, 0), (9, 0)]).box(1, 1, 1)",
}
# Slow hostile kinds (they run to their time limit) are a small share of the mix.
SLOW = {"infinite loop"}


def _start_server(config_dir: Path, workers: int) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "CADSNAP_CONFIG_DIR": str(config_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_runtime", "serve", "--backend", "none", "--port", "0"]
        + ["--workers", str(workers), "--exec-timeout", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    info_path = config_dir / "server.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if info_path.exists():
            try:
                url = json.loads(info_path.read_text())["url"]
                token = (config_dir / "token").read_text().strip()
                return proc, url, token
            except (ValueError, KeyError, OSError):
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve did not publish its URL")


def _plan(jobs: int, seed: int) -> list[tuple[str, str, float | None]]:
    rng = random.Random(seed)
    plan = []
    for _ in range(jobs):
        if rng.random() < 0.5:
            name = rng.choice(sorted(ORDINARY))
            template, volume = ORDINARY[name]
            a = rng.randint(1, 50)
            plan.append((name, template.format(a=a), volume(a) if volume else None))
        else:
            fast = sorted(set(HOSTILE) - SLOW)
            name = rng.choice(sorted(SLOW)) if rng.random() < 0.02 else rng.choice(fast)
            plan.append((name, HOSTILE[name], None))
    return plan


def run(jobs: int, workers: int, clients: int, seed: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory(prefix="cadsnap-bench-hostile-") as tmp:
        proc, url, token = _start_server(Path(tmp), workers)
        try:
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            health = client.get(f"{protocol.API_PREFIX}/health").json()
            plan = _plan(jobs, seed)
            outcomes: Counter[str] = Counter()
            problems: list[str] = []

            def one(item: tuple[str, str, float | None]) -> None:
                name, code, volume = item
                try:
                    reply = client.post(f"{protocol.API_PREFIX}/exec", json={"code": code})
                except httpx.HTTPError as exc:
                    problems.append(f"{name}: lost ({exc})")
                    return
                body = reply.json()
                if name in ORDINARY:
                    ok = reply.status_code == 200 and (
                        volume is None or abs(body["result"]["volume"] - volume) < 1e-6 * volume
                    )
                    outcomes["ordinary ok" if ok else "ordinary failed"] += 1
                    if not ok:
                        problems.append(f"{name}: {reply.status_code} {str(body)[:300]}")
                elif reply.status_code == 422 and "error" in body:
                    outcomes[f"hostile: {body['error']['code']}"] += 1
                elif name == "lone surrogate" and reply.status_code == 200:
                    outcomes["hostile: lone surrogate printed, escaped"] += 1
                else:
                    outcomes["hostile: unexpected answer"] += 1
                    problems.append(f"{name}: {reply.status_code} {str(body)[:300]}")

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as ex:
                list(tqdm(ex.map(one, plan), total=len(plan), desc="mixed jobs"))
            elapsed = time.perf_counter() - started
            after = client.get(f"{protocol.API_PREFIX}/health").json()
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    answered = sum(outcomes.values())
    return {
        "jobs": jobs,
        "answered": answered,
        "lost": jobs - answered,
        "ordinary": sum(1 for name, _, _ in plan if name in ORDINARY),
        "ordinary_ok": outcomes["ordinary ok"],
        "outcomes": dict(sorted(outcomes.items())),
        "problems": problems[:50],
        "seconds": elapsed,
        "workers_after": after["workers"],
        "sandbox": health.get("sandbox"),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Hostile and ordinary programs through the server",
        "",
        f"Sandbox: {(result['sandbox'] or {}).get('mechanism', 'unknown')}",
        "",
        f"- jobs sent: {result['jobs']}, answered: {result['answered']}, lost: {result['lost']}",
        f"- ordinary parts: {result['ordinary']}, correct: {result['ordinary_ok']}",
        f"- time: {result['seconds']:.1f} s; workers after: {result['workers_after']}",
        "",
        "| outcome | count |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in result["outcomes"].items()]
    if result["problems"]:
        lines += ["", "Problems:", *[f"- {p}" for p in result["problems"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers of the server")
    parser.add_argument("--clients", type=int, default=4, help="client threads sending at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    result = run(args.jobs, args.workers, args.clients, args.seed)
    text = report(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile.md").write_text(text)
    (args.out / "hostile.json").write_text(json.dumps(result, indent=2))
    ok = result["lost"] == 0 and result["ordinary_ok"] == result["ordinary"] and not result["problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
