"""Synthetic data engine: seeded CadQuery programs, FreeCAD-style renders, sharded datasets.

- ``program.generate(seed)``: the canonical program for a seed: composed by the part grammar
  (``grammar``) or drawn from a named family (``families``), written by ``codefmt``.
- ``sample.make_sample(seed)``: policy check, run, single-solid check, render, PNG.
- ``writer.write_dataset(WriterConfig(...))`` / ``python -m training.synth``: shards, splits, manifest.
- ``dataset.load_split(data_dir, split)``: a split as a ``datasets.Dataset``.
- ``gallery``: contact sheet and coverage chart.
"""
