"""Synthetic data engine: formatter, families, samples, shards, splits, loading, gallery."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cadquery as cq
import pyarrow.parquet as pq
import pytest
from PIL import Image

from model_runtime.sandbox import check_policy
from training.synth.__main__ import main as synth_main
from training.synth.codefmt import Program, fmt_number
from training.synth.dataset import load_split
from training.synth.families import FAMILIES
from training.synth.program import COMPOSED, MAX_CODE_CHARS, generate
from training.synth.sample import (
    SampleRejected,
    execute,
    geometry_signature,
    make_sample,
    split_of,
)
from training.synth.writer import DatasetConfigMismatch, WriterConfig, excluded_signatures, write_dataset

SEEDS_PER_FAMILY = 10


def test_number_formatting_is_what_a_designer_types() -> None:
    assert [fmt_number(v) for v in (10.0, 2.5, 0.3333, -4.0, 1e-9, 12.10)] == [
        "10",
        "2.5",
        "0.33",
        "-4",
        "0",
        "12.1",
    ]
    with pytest.raises(ValueError):
        fmt_number(float("nan"))


def test_program_code_and_operations() -> None:
    p = Program()
    base = p.assign("base", p.workplane("XZ").rect(20, 10).extrude(5.0, both=True))
    p.result(p.chain(base.name).faces(">Z").workplane().polarArray(6, 0, 360, 4).cboreHole(3.4, 6.5, 3.3))
    code = p.code()
    assert code.startswith(
        'import cadquery as cq\n\nbase = cq.Workplane("XZ").rect(20, 10).extrude(5, both=True)\n'
    )
    assert 'result = base.faces(">Z").workplane().polarArray(6, 0, 360, 4).cboreHole(3.4, 6.5, 3.3)' in code
    assert p.operations() == ["cbore_hole", "extrude_both", "polar_pattern", "rect", "workplanes_2"]
    scope: dict = {}
    exec(code, scope)
    assert len(scope["result"].solids().vals()) == 1
    with pytest.raises(ValueError, match="result"):
        Program().code()


def test_same_seed_same_program() -> None:
    for seed in (0, 7, 123456):
        a, b = generate(seed), generate(seed)
        assert (a.code, a.family, a.params_json()) == (b.code, b.family, b.params_json())
    assert len({generate(seed).code for seed in range(40)}) == 40


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gives_valid_readable_solids(family: str) -> None:
    valid = 0
    for seed in range(SEEDS_PER_FAMILY):
        program = generate(seed, family)
        assert program.code.startswith("import cadquery as cq\n") and "\nresult = " in program.code
        assert len(program.code) <= MAX_CODE_CHARS
        check_policy(program.code)  # the sandbox's static policy accepts every program
        for value in json.loads(program.params_json()).values():
            if isinstance(value, float):
                assert round(value, 2) == value  # rounded like a designer's input
        try:
            solid = execute(program.code)
        except SampleRejected:
            continue
        assert solid.isValid() and solid.Volume() > 0
        valid += 1
    # Unlucky draws are dropped by the writer; a family must still mostly work.
    assert valid >= (0.7 if family == "freeform" else 0.8) * SEEDS_PER_FAMILY, valid


def test_operation_coverage_across_families() -> None:
    seen: Counter = Counter()
    for family in FAMILIES:
        for seed in range(SEEDS_PER_FAMILY):
            seen.update(generate(seed, family).operations)
    required = {
        "extrude",
        "extrude_both",
        "cut_extrude",
        "hole",
        "cbore_hole",
        "csk_hole",
        "fillet",
        "chamfer",
        "shell",
        "revolve",
        "mirror",
        "rect_pattern",
        "polar_pattern",
        "slot",
        "polyline",
        "arc",
        "polygon",
        "rect",
        "circle",
        "union",
        "boolean_cut",
        "workplanes_1",
        "workplanes_2",
        "workplanes_3",
    }
    assert required <= set(seen), required - set(seen)
    assert len(FAMILIES) >= 16 and "freeform" in FAMILIES


def test_execute_rejects_with_reasons() -> None:
    with pytest.raises(SampleRejected) as info:
        execute("import os\nresult = os.listdir('.')\n")
    assert info.value.reason == "policy"
    with pytest.raises(SampleRejected) as info:
        execute("import cadquery as cq\nresult = cq.Workplane('XY').box(1, 1, 1).fillet(5)\n")
    assert info.value.reason == "runtime_error"
    two = "import cadquery as cq\nresult = cq.Workplane('XY').pushPoints([(0, 0), (9, 0)]).box(1, 1, 1)\n"
    with pytest.raises(SampleRejected) as info:
        execute(two)
    assert info.value.reason == "not_one_solid"


def test_signature_ignores_placement_but_not_shape() -> None:
    box = cq.Workplane("XY").box(10, 20, 30).val()
    moved = box.translate(cq.Vector(5, -3, 2)).rotate(cq.Vector(), cq.Vector(0, 0, 1), 90)
    assert geometry_signature(box) == geometry_signature(moved)
    assert geometry_signature(box) != geometry_signature(cq.Workplane("XY").box(10, 20, 31).val())


def test_same_seed_same_sample_image_bytes() -> None:
    a, b = make_sample(5), make_sample(5)
    assert a.image_png == b.image_png and a.code == b.code and a.camera == b.camera
    image = Image.open(__import__("io").BytesIO(a.image_png))
    assert image.size == (224, 224)
    camera = json.loads(a.camera)
    assert camera["up"] == "+Z" and camera["projection"] == "orthographic"


def test_split_by_seed_hash_is_stable_and_proportioned() -> None:
    counts = Counter(split_of(seed) for seed in range(20000))
    assert abs(counts["train"] / 20000 - 0.9) < 0.01
    assert abs(counts["val"] / 20000 - 0.05) < 0.006 and abs(counts["test"] / 20000 - 0.05) < 0.006
    assert [split_of(s) for s in range(50)] == [split_of(s) for s in range(50)]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset written through the command line (2 shards of 16 seeds)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    assert synth_main(["--n", "20", "--out", str(out), "--shard-size", "16", "--size", "96"]) == 0
    return out


def test_written_dataset_has_manifest_gallery_and_coverage(dataset_dir: Path) -> None:
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert manifest["samples"] >= 20 and manifest["shards"] == 2
    assert manifest["samples"] + sum(manifest["rejected"].values()) + manifest["duplicates"] == 32
    assert sum(manifest["families"].values()) == manifest["samples"] == sum(manifest["splits"].values())
    assert manifest["operations"]["extrude"] > 0
    assert Image.open(dataset_dir / "gallery.png").size[0] == 6 * 224
    assert Image.open(dataset_dir / "coverage.png").size[0] > 500


def test_shards_load_with_datasets_and_splits_are_disjoint(dataset_dir: Path) -> None:
    seeds: dict[str, set[int]] = {}
    signatures: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        try:
            data = load_split(dataset_dir, split)
        except FileNotFoundError:  # a tiny dataset may have no sample in a small split
            continue
        assert {"image", "code", "family", "params", "camera", "seed"} <= set(data.column_names)
        row = data[0]
        assert isinstance(row["image"], Image.Image) and row["image"].size == (96, 96)
        assert isinstance(json.loads(row["params"]), dict) and "azimuth_deg" in json.loads(row["camera"])
        assert all(split_of(s) == split for s in data["seed"])
        seeds[split], signatures[split] = set(data["seed"]), set(data["signature"])
    assert "train" in seeds
    names = list(seeds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not seeds[a] & seeds[b] and not signatures[a] & signatures[b]
    with pytest.raises(ValueError, match="split"):
        load_split(dataset_dir, "holdout")


def test_same_seed_same_shard_and_worker_count_does_not_matter(dataset_dir: Path, tmp_path: Path) -> None:
    config = WriterConfig(out=tmp_path / "again", n=20, workers=2, shard_size=16, image_size=96)
    write_dataset(config, progress=False)
    for path in sorted((dataset_dir / "data").rglob("*.parquet")):
        twin = tmp_path / "again" / path.relative_to(dataset_dir)
        assert pq.read_table(path).equals(pq.read_table(twin)), path.name


def test_resume_skips_finished_shards_and_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    write_dataset(WriterConfig(out=out, n=4, shard_size=6, image_size=64), progress=False)
    first = sorted((out / "shards").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in first}
    manifest = write_dataset(WriterConfig(out=out, n=9, shard_size=6, image_size=64), progress=False)
    assert manifest["shards"] >= 2 and manifest["samples"] >= 9
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    with pytest.raises(DatasetConfigMismatch):
        write_dataset(WriterConfig(out=out, n=9, shard_size=6, image_size=128), progress=False)


# Seed 7704 of the families (a shelled pentagon prism, then a fillet) segfaults OpenCascade 7.9.3 natively.
NATIVE_CRASH_SEED = 7704


def test_a_native_crash_kills_only_its_shard_process_and_the_seed_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "crash"
    # Six seeds, saved every two: the crash at the fifth resumes from the save after the fourth.
    config = WriterConfig(out=out, n=2, shard_size=6, image_size=64, base_seed=NATIVE_CRASH_SEED - 4,
                          family_share=1.0, checkpoint_every=2)
    manifest = write_dataset(config, progress=False)
    crash_file = out / "shards" / "crashes.json"
    if not crash_file.exists():
        pytest.skip("this OpenCascade build does not crash on the known seed; crash path not exercised")
    assert json.loads(crash_file.read_text()) == {"0": [NATIVE_CRASH_SEED]}
    assert manifest["rejected"].get("crashed") == 1
    assert manifest["samples"] + sum(manifest["rejected"].values()) + manifest["duplicates"] == 6
    tables = [pq.read_table(path) for path in (out / "data").rglob("*.parquet")]
    kept = {seed for table in tables for seed in table["seed"].to_pylist()}
    assert NATIVE_CRASH_SEED not in kept and {NATIVE_CRASH_SEED - 1, NATIVE_CRASH_SEED + 1} <= kept
    assert not list((out / "shards" / "work").iterdir()), "a finished shard leaves no progress or marker file"


def test_a_shard_resumes_from_its_saved_progress(tmp_path: Path) -> None:
    import pickle

    from training.synth.writer import ShardResult, build_shard

    config = WriterConfig(out=tmp_path, n=1, shard_size=4, image_size=32, family_share=1.0,
                          checkpoint_every=2)
    progress = tmp_path / "0.progress"
    fresh = build_shard(config, 0, progress=progress)
    assert progress.exists()  # saved after the second seed (never after the last)
    saved, next_seed = pickle.loads(progress.read_bytes())
    assert next_seed == 2 and {s.seed for s in saved.samples} <= {0, 1}
    # A shard resumed from a save made by another run carries that run's counts and runs only the rest.
    progress.write_bytes(pickle.dumps((ShardResult(index=0, samples=[], rejected=Counter(earlier=2)), 2)))
    resumed = build_shard(config, 0, progress=progress)
    assert resumed.rejected["earlier"] == 2
    assert [s.seed for s in resumed.samples] == [s.seed for s in fresh.samples if s.seed >= 2]


def test_resized_copy_keeps_every_row_at_the_model_size(dataset_dir: Path, tmp_path: Path) -> None:
    from training.synth.resize import main as resize_main

    out = tmp_path / "small"
    args = ["--data", str(dataset_dir), "--out", str(out), "--size", "32", "--splits", "train"]
    assert resize_main(args) == 0
    original, small = load_split(dataset_dir, "train"), load_split(out, "train")
    assert small.column_names == original.column_names and len(small) == len(original)
    assert small["code"] == original["code"] and small["signature"] == original["signature"]
    image = small[0]["image"]
    assert image.format == "WEBP" and image.size == (32, 32)
    # The same pixels as the collator's squaring and CLIP's bicubic resize, up to WebP's rounding.
    expected = original[0]["image"].convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    difference = [abs(a - b) for a, b in zip(image.convert("RGB").tobytes(), expected.tobytes(), strict=True)]
    assert sum(difference) / len(difference) < 4
    assert json.loads((out / "resized.json").read_text())["size"] == 32
    assert not (out / "data" / "val").exists()

    shard = next((out / "data" / "train").glob("*.parquet"))
    stamp = shard.stat().st_mtime_ns
    assert resize_main(args) == 0
    assert shard.stat().st_mtime_ns == stamp, "a finished shard is not written again"
    assert resize_main(["--data", str(tmp_path / "none"), "--out", str(out)]) == 2


# ----------------------------------------------------------------------------- the part grammar

GRAMMAR_SEEDS = 40


def test_composed_programs_are_readable_checked_and_mostly_valid() -> None:
    valid = 0
    for seed in range(GRAMMAR_SEEDS):
        program = generate(seed, COMPOSED)
        assert program.family == COMPOSED and program == generate(seed, COMPOSED)
        assert program.code.startswith("import cadquery as cq\n") and "\nresult = " in program.code
        check_policy(program.code)
        if len(program.code) > MAX_CODE_CHARS:  # the writer rejects these as too_long
            continue
        try:
            solid = execute(program.code)
        except SampleRejected:
            continue
        assert solid.isValid() and solid.Volume() > 0
        valid += 1
    # About 75 % run into one valid solid (measured 72-77 % over 100-seed ranges); the writer drops the rest.
    assert valid >= 0.55 * GRAMMAR_SEEDS, valid


def test_the_grammar_covers_what_parts_are_made_of() -> None:
    seen: Counter = Counter()
    most: Counter = Counter()
    for seed in range(300):
        program = generate(seed, COMPOSED)
        seen.update(program.operations)
        for op, n in program.operation_counts.items():
            most[op] = max(most[op], n)
    required = {
        "extrude", "extrude_both", "cut_extrude", "pocket", "revolve", "loft", "shell", "rib", "gusset",
        "hole", "blind_hole", "cbore_hole", "csk_hole", "rect_pattern", "polar_pattern", "point_pattern",
        "angled_workplane", "offset_workplane", "fillet", "chamfer", "mirror", "union", "boolean_cut",
        "rect", "rounded_rect", "circle", "slot", "polygon", "polyline", "arc", "sketch_subtract",
        "workplanes_1", "workplanes_2", "workplanes_3",
    }
    assert required <= set(seen), required - set(seen)
    assert "workplanes_4+" not in seen  # 1-3 sketch planes per part
    # Sketches combine up to six primitives: some sketch holds 4+ rectangles or circles.
    assert max(most["rect"], most["circle"]) >= 4


def test_family_share_mixes_the_grammar_in_and_one_keeps_the_old_programs() -> None:
    import hashlib

    composed = sum(generate(seed).family == COMPOSED for seed in range(2000))
    assert abs(composed / 2000 - 0.8) < 0.03  # default: 20 % of the seeds from the named families
    assert not any(generate(seed, family_share=1.0).family == COMPOSED for seed in range(200))
    # With the share at 1 every seed gives the program it gave before the grammar existed.
    codes = "".join(generate(seed, family_share=1.0).code for seed in range(30))
    assert hashlib.sha256(codes.encode()).hexdigest() == (
        "e9b687a2c2a3ebd4cbae1d1a4872d2b5b62963ed60f6da781431d83f46aa2193")


def test_operations_inside_a_sketch_are_counted_as_sketch_primitives() -> None:
    from training.synth.codefmt import Chain

    p = Program()
    sketch = Chain("cq.Sketch()").rect(40, 30).vertices().fillet(3).reset()
    sketch = sketch.push([(5, 0)]).circle(4, mode="s").push([(-9, 0)]).regularPolygon(3, 6, mode="s")
    name = p.assign("outline", sketch.push([(0, 12)]).polygon([(-3, 0), (3, 0), (0, 4), (-3, 0)]))
    p.tag("rib")
    p.result(p.workplane("XY").placeSketch(name).extrude(5).faces(">Z").workplane().hole(2, 3)
             .faces(">Z").workplane().polygon(6, 8).extrude(2))
    counts = p.operation_counts()
    assert counts == Counter({"rect": 1, "rounded_rect": 1, "circle": 1, "polygon": 2, "polyline": 1,
                              "sketch_subtract": 2, "sketch": 1, "extrude": 2, "blind_hole": 1, "rib": 1,
                              "workplanes_3": 1})
    scope: dict = {}
    exec(p.code(), scope)
    assert len(scope["result"].solids().vals()) == 1


def test_the_writer_refuses_the_geometry_of_the_out_of_family_parts(tmp_path: Path, monkeypatch) -> None:
    import training.synth.writer as writer

    first = tmp_path / "first"
    write_dataset(WriterConfig(out=first, n=1, shard_size=3, image_size=48, family_share=1.0), progress=False)
    record = json.loads(next((first / "shards").glob("shard-*.json")).read_text())
    banned = tmp_path / "signatures.json"
    banned.write_text(json.dumps(record["signatures"][:1]))
    monkeypatch.setattr(writer, "EVAL_SIGNATURES", banned)
    assert excluded_signatures() == set(record["signatures"][:1])
    again = write_dataset(WriterConfig(out=tmp_path / "again", n=1, shard_size=3, image_size=48,
                                       family_share=1.0), progress=False)
    shard = json.loads(next((tmp_path / "again" / "shards").glob("shard-00000.json")).read_text())
    assert shard["duplicates"] == 1 and record["signatures"][0] not in shard["signatures"]
    assert again["samples"] >= 1


def test_a_dask_cluster_on_loopback_writes_the_same_dataset(dataset_dir: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert synth_main(["--n", "20", "--out", str(tmp_path / "dask"), "--shard-size", "16", "--size", "96",
                           "--scheduler", cluster.scheduler_address, "--no-gallery"]) == 0
    for path in sorted((dataset_dir / "data").rglob("*.parquet")):
        twin = tmp_path / "dask" / path.relative_to(dataset_dir)
        assert pq.read_table(path).equals(pq.read_table(twin)), path.name
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert manifest["operation_counts"] and manifest["samples"] >= 20
