"""Benchmarks that print numbers and write a short report (``out/bench/`` by default).

- ``python -m model_runtime.bench.sandbox``: sandbox latency (cold, warm), throughput, timeout cost.
"""
