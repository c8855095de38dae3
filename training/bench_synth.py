"""Benchmark the synthetic data engine: samples per second per core, end to end, at 224 px.

    python -m training.bench_synth --n 200 --out scratch/bench_synth

Three measurements, all in this one process (one core):
1. stages: generate, execute (policy check + run + single-solid check), signature, render, PNG encode,
   over ``--n`` seeds after a warm-up;
2. end to end: the writer's steps (shards, de-duplication, parquet) in this process, and the
   ``write_dataset`` command path (a child process per shard) by the wall clock;
3. the alternative execution path for comparison: ``SandboxPool.run`` in a separate worker process,
   then ``ExecResult.shape()`` to rebuild the solid here before rendering.

Rates are given per CPU-second of this process (= per core, robust on a shared machine) and per
wall-second. Prints a table and writes ``bench_synth.json`` and ``bench_synth.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.synth.sample import SampleRejected, make_sample

STAGES = ("generate", "execute", "signature", "render", "encode")


def bench_stages(seeds: range, size: int) -> dict[str, Any]:
    totals: Counter = Counter()
    kept = rejected = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for seed in tqdm(seeds, desc="stages", unit="sample"):
        try:
            sample = make_sample(seed, size)
        except SampleRejected:
            rejected += 1
            continue
        kept += 1
        totals.update(sample.timings)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    measured = sum(totals.values())
    return {
        "seeds": len(seeds),
        "kept": kept,
        "rejected": rejected,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "samples_per_cpu_s": round(kept / cpu, 2),
        "samples_per_wall_s": round(kept / wall, 2),
        "ms_per_kept_sample": {k: round(1000 * totals[k] / max(1, kept), 2) for k in STAGES},
        "share_of_time": {k: round(totals[k] / measured, 3) for k in STAGES},
        "unaccounted_cpu_ms_per_sample (rejected seeds, bookkeeping)": round(
            1000 * (cpu - measured) / max(1, kept), 2
        ),
    }


def bench_writer(n: int, size: int, base_seed: int) -> dict[str, Any]:
    """The writer's whole job per sample, in this process (CPU), and the command's path (wall).

    ``write_dataset`` builds each shard in a child process of a fork server, whose CPU time this
    process cannot see; so the CPU cost is measured by running the same steps (``build_shard``,
    de-duplication, ``write_shard_files``) here, and the command itself is timed by the wall clock.
    """
    from training.synth.writer import WriterConfig, build_shard, write_dataset, write_shard_files

    shard_size = max(10, n // 4)
    with tempfile.TemporaryDirectory() as folder:
        config = WriterConfig(
            out=Path(folder) / "inproc", n=n, shard_size=shard_size, image_size=size, base_seed=base_seed
        )
        seen: set[str] = set()
        kept = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for index in tqdm(range(-(-n // shard_size)), desc="writer in-process", unit="shard"):
            fresh = [s for s in build_shard(config, index).samples if s.signature not in seen]
            seen.update(s.signature for s in fresh)
            write_shard_files(config.out, index, fresh)
            kept += len(fresh)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        megabytes = sum(p.stat().st_size for p in config.out.rglob("*.parquet")) / 1e6

        command = WriterConfig(
            out=Path(folder) / "command",
            n=n,
            workers=1,
            shard_size=shard_size,
            image_size=size,
            base_seed=base_seed,
        )
        wall1 = time.perf_counter()
        manifest = write_dataset(command)
        command_wall = time.perf_counter() - wall1
    return {
        "kept": kept,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "samples_per_cpu_s": round(kept / cpu, 2),
        "samples_per_wall_s": round(kept / wall, 2),
        "parquet_kb_per_sample": round(1000 * megabytes / max(1, kept), 1),
        "command_workers_1": {
            "kept": manifest["samples"],
            "wall_s": round(command_wall, 2),
            "samples_per_wall_s": round(manifest["samples"] / command_wall, 2),
        },
    }


def bench_sandbox_path(seeds: range, size: int) -> dict[str, Any]:
    """Generate -> SandboxPool.run (its worker process) -> rebuild the shape here -> render.

    CPU counts this process and the pool's worker (reaped when the pool closes).
    """
    import resource

    from model_runtime.render import render
    from model_runtime.sandbox import SandboxError, SandboxPool
    from training.synth.program import generate

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    done = 0
    child0 = children_cpu()
    with SandboxPool(workers=1, timeout_s=20.0) as pool:
        pool.run("import cadquery as cq\nresult = cq.Workplane('XY').box(1, 1, 1)\n")  # start the worker
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for seed in tqdm(seeds, desc="sandbox path", unit="sample"):
            try:
                result = pool.run(generate(seed).code)
            except SandboxError:
                continue
            render(result.shape(), size=size)
            done += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    worker_cpu = children_cpu() - child0  # includes the worker's start-up: an upper bound
    return {
        "kept": done,
        "wall_s": round(wall, 2),
        "parent_cpu_s": round(cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "samples_per_cpu_s": round(done / (cpu + worker_cpu), 2),
        "samples_per_wall_s": round(done / wall, 2),
        "note": "no signature or PNG encoding: compare with the stages' execute + render",
    }


def bench_render_only(size: int, repeats: int = 50) -> dict[str, float]:
    import cadquery as cq

    from model_runtime.render import render

    shape = cq.Workplane("XY").box(60, 40, 10).faces(">Z").workplane().rarray(40, 20, 2, 2).hole(5).val()
    render(shape, size=size)
    start = time.perf_counter()
    for _ in range(repeats):
        render(shape, size=size)
    return {"ms_per_render_plate_with_4_holes": round(1000 * (time.perf_counter() - start) / repeats, 2)}


def to_markdown(report: dict[str, Any]) -> str:
    stages = report["stages"]
    lines = [
        "# Synthetic data engine benchmark",
        "",
        f"Machine: {report['machine']}; image size {report['size']} px; one process (one core).",
        "",
        "| measurement | samples/s per core (CPU) | samples/s (wall) |",
        "|---|---|---|",
        f"| stages only (make_sample) | {stages['samples_per_cpu_s']} | {stages['samples_per_wall_s']} |",
        f"| end to end: shards + parquet, in this process | {report['writer']['samples_per_cpu_s']} | "
        f"{report['writer']['samples_per_wall_s']} |",
        f"| `python -m training.synth --workers 1` (a child process per shard) | - | "
        f"{report['writer']['command_workers_1']['samples_per_wall_s']} |",
    ]
    if "sandbox_path" in report:
        sandbox = report["sandbox_path"]
        lines.append(
            f"| alternative: SandboxPool.run + shape() + render (no signature, no PNG) | "
            f"{sandbox['samples_per_cpu_s']} | {sandbox['samples_per_wall_s']} |"
        )
    lines += ["", "Where the time goes (per kept sample):", "", "| stage | CPU ms | share |", "|---|---|---|"]
    lines += [
        f"| {k} | {stages['ms_per_kept_sample'][k]} | {100 * stages['share_of_time'][k]:.0f}% |"
        for k in STAGES
    ]
    lines += [
        "",
        f"Render only (plate with 4 holes): {report['render_only']['ms_per_render_plate_with_4_holes']} ms.",
        f"Parquet size: {report['writer']['parquet_kb_per_sample']} kB per sample.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="seeds per measurement (default 200)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=Path("scratch/bench_synth"))
    parser.add_argument("--skip-sandbox", action="store_true", help="skip the SandboxPool comparison")
    args = parser.parse_args(argv)

    make_sample(10**9, args.size)  # warm-up: imports, OpenGL context, first mesh
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "size": args.size,
        "n": args.n,
    }
    report["render_only"] = bench_render_only(args.size)
    report["stages"] = bench_stages(range(100_000, 100_000 + args.n), args.size)
    report["writer"] = bench_writer(args.n, args.size, base_seed=200_000)
    if not args.skip_sandbox:
        report["sandbox_path"] = bench_sandbox_path(range(100_000, 100_000 + min(args.n, 100)), args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_synth.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    markdown = to_markdown(report)
    (args.out / "bench_synth.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {args.out / 'bench_synth.json'} and {args.out / 'bench_synth.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
