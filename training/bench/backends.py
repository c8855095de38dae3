"""Backend benchmark: per-stage latency for gguf and hf on CPU, and our gguf backend's overhead.

    python -m training.bench.backends --out out/bench [--hf HF_DIR] [--repeats 20]

Stages: load, image encode, prompt (image + text through the LM), tokens/s, execute (sandbox),
rank (render + compare), fit dimensions (model_runtime.picture.refine). Overhead: ``GGUFBackend.generate``
against calling llama-cpp-python directly (``Llama`` + a ``Llava15ChatHandler`` subclass with the
same prompt) on the same model, image and greedy settings; target <= 1.05x. Without ``--hf`` it
trains the tests' tiny LLaVA (run from a source checkout). Writes ``backends.md`` and
``backends.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from model_runtime.backends import GenerationSettings, load_backend
from model_runtime.picture.images import to_data_uri
from model_runtime.pipeline import GenerateRequest, Pipeline
from model_runtime.prompt import DEFAULT_INSTRUCTION
from model_runtime.sandbox import SandboxPool

OVERHEAD_TARGET = 1.05


def _image(seed: int = 7, size: int = 96) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def stage_latency(backend, pool, repeats: int, n: int) -> dict[str, Any]:
    """Median per-stage seconds over ``repeats`` pipeline runs (after one warm-up)."""
    pipeline = Pipeline(backend, pool, render_size=224)
    request = GenerateRequest(image=_png(_image()), n=n, max_new_tokens=128)
    pipeline.run(request)  # warm-up: first-call allocations, renderer start-up
    runs = [
        pipeline.run(request).timings
        for _ in tqdm(range(repeats), desc=f"{backend.name} stages", leave=False)
    ]
    keys = (
        "decode_s",
        "encode_s",
        "prompt_s",
        "tokens_s",
        "new_tokens",
        "tokens_per_s",
        "execute_s",
        "rank_s",
        "refine_s",
    )
    out = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    out["load_s"] = backend.load_s
    out["total_s"] = statistics.median(r["total_s"] for r in runs)
    return out


def gguf_overhead(text: Path, mmproj: Path, repeats: int, n_threads: int | None) -> dict[str, Any]:
    """Median wall time of one greedy answer: our backend vs llama-cpp-python's own chat path."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Llava15ChatHandler

    from model_runtime.backends.gguf import GGUFBackend

    image = _image(3, 32)  # at the encoder's size: both paths see identical pixels
    ours = GGUFBackend(text, mmproj, n_ctx=512, n_threads=n_threads)
    leading = " " if ours._leading_space else ""

    class TrainingTemplate(Llava15ChatHandler):
        """llama-cpp-python's handler with our training prompt instead of its default template."""

        DEFAULT_SYSTEM_MESSAGE = None
        CHAT_FORMAT = (
            "{% for message in messages %}{% if message.role == 'user' %}" + leading + "USER: "
            "{% for c in message.content %}{% if c.type == 'image_url' %}{{ c.image_url.url }}\n{% endif %}"
            "{% endfor %}{% for c in message.content %}{% if c.type == 'text' %}{{ c.text }}{% endif %}"
            "{% endfor %}{% endif %}{% endfor %} ASSISTANT:"
        )

    direct = Llama(
        str(text), chat_handler=TrainingTemplate(clip_model_path=str(mmproj), verbose=False), n_ctx=512,
        n_threads=n_threads, verbose=False,
    )  # fmt: skip
    uri = to_data_uri(image)
    content = [{"type": "image_url", "image_url": {"url": uri}}]
    content.append({"type": "text", "text": DEFAULT_INSTRUCTION})
    messages = [{"role": "user", "content": content}]
    settings = GenerationSettings(n=1, max_new_tokens=128)

    def run_ours() -> str:
        return ours.generate(image, None, settings)[0]

    def run_direct() -> str:
        out = direct.create_chat_completion(
            messages=messages,
            max_tokens=128,
            temperature=0.0,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            repeat_penalty=1.0,
        )
        return out["choices"][0]["message"]["content"]

    answers = {"ours": run_ours(), "direct": run_direct()}  # warm-up, and the answers to compare
    times: dict[str, list[float]] = {"ours": [], "direct": []}
    for _ in tqdm(range(repeats), desc="gguf overhead", leave=False):
        for name, fn in (("ours", run_ours), ("direct", run_direct)):  # interleaved: same machine load
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ours.close()
    direct.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "ours_s": med["ours"],
        "direct_s": med["direct"],
        "ratio": med["ours"] / med["direct"],
        "target": OVERHEAD_TARGET,
        "same_answer": answers["ours"].strip() == answers["direct"].strip(),
    }


def _markdown(report: dict[str, Any]) -> str:
    rows = [
        ("load", "load_s", "s"), ("decode image", "decode_s", "s"), ("image encode", "encode_s", "s"),
        ("prompt (image + text)", "prompt_s", "s"), ("generation", "tokens_s", "s"),
        ("new tokens", "new_tokens", ""), ("tokens/s", "tokens_per_s", ""),
        ("execute (sandbox)", "execute_s", "s"),
        ("rank (render + compare)", "rank_s", "s"),
        ("fit dimensions (render + compare, repeated)", "refine_s", "s"),
        ("total (without load)", "total_s", "s"),
    ]  # fmt: skip
    names = [b for b in ("gguf", "hf") if b in report["stages"]]
    lines = [
        f"# Backend benchmark ({report['model']}, {report['candidates']} candidates, CPU)",
        "",
        f"Machine: {report['machine']}; median of {report['repeats']} runs after a warm-up.",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, unit in rows:
        cells = []
        for name in names:
            value = report["stages"][name][key]
            cells.append(f"{value * 1000:.1f} ms" if unit == "s" and value < 1 else f"{value:.3g}{unit}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "overhead" in report:
        o = report["overhead"]
        verdict = "meets" if o["ratio"] <= o["target"] else "MISSES"
        lines += [
            "",
            f"gguf backend vs llama-cpp-python directly (same model, image, prompt, greedy): "
            f"{o['ours_s'] * 1000:.2f} ms vs {o['direct_s'] * 1000:.2f} ms = **{o['ratio']:.3f}x** "
            f"({verdict} the {o['target']}x target; same answer: {o['same_answer']}).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", type=Path, help="a LLaVA HF folder (default: train the tests' tiny model)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its choice)")
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args(argv)
    from training.export_gguf import export

    with tempfile.TemporaryDirectory() as tmp:
        hf = args.hf
        if hf is None:
            from training.tiny_models import make_trained_tiny_llava

            print("training the tiny LLaVA (about a minute)...")
            hf = make_trained_tiny_llava(Path(tmp) / "tiny")
        exported = export(hf, Path(tmp) / "gguf", outtype="f16", quant=("q8_0",), name="bench")
        text, mmproj = exported.quantised["q8_0"], exported.mmproj
        report: dict[str, Any] = {
            "model": f"{Path(hf).name} (q8_0 GGUF / fp32 HF)",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at start",
            "repeats": args.repeats,
            "candidates": args.candidates,
            "stages": {},
        }
        with SandboxPool(workers=2, timeout_s=30.0) as pool:
            gguf = load_backend("gguf", model=text, mmproj=mmproj, n_ctx=512, n_threads=args.threads)
            report["stages"]["gguf"] = stage_latency(gguf, pool, args.repeats, args.candidates)
            gguf.close()
            if not args.skip_hf:
                hf_backend = load_backend("hf", model=hf, device="cpu")
                report["stages"]["hf"] = stage_latency(hf_backend, pool, args.repeats, args.candidates)
                hf_backend.close()
        report["overhead"] = gguf_overhead(text, mmproj, max(args.repeats, 20), args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.json").write_text(json.dumps(report, indent=2))
    markdown = _markdown(report)
    (args.out / "backends.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
