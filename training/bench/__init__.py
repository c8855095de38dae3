"""Benchmarks that print numbers and write a short report (``out/bench/`` by default).

- ``python -m training.bench.sandbox``: sandbox latency (cold, warm), throughput, timeout cost.
- ``python -m training.bench.backends``: per-stage latency (gguf, hf) and the gguf backend's
  overhead against calling llama-cpp-python directly.
- ``python -m training.bench.workbench``: button press to inserted solid in real FreeCAD.

Training benchmarks: ``python -m training.bench_synth`` (data engine samples/s/core),
``python -m training.bench_compact`` (compact model sizes),
``python -m training.bench_qlora`` (7B QLoRA, GPU).
"""
