"""Build a held-out evaluation set from CAD code other people wrote: STEP files, then FreeCAD renders.

The picture search is tuned on our own hand-written parts (``training/eval_oof``); this set is the
second, honest check of generality: parts from published part libraries, built with their own code,
never used to tune anything. Nothing here is committed but this script: the parts go to a folder
(NAME.step, then NAME.png beside it: DESIGN.md's evaluation format).

Sources (all on PyPI; licences as their package metadata or LICENSE file states):

- CadQuery group (runs under CadQuery 2.8; install without dependencies into a folder of its own,
  ``pip install --no-deps --target DIR cqgridfinity cqkit cq-electronics cadqueryhelper
  vibe-cading cq-centrifugal-fan``, then put DIR on ``PYTHONPATH``):
    cqgridfinity 0.5.7 (MIT; Gridfinity bins and baseplates), cqkit 0.5.8 (MIT; needed by
    cqgridfinity), cq-electronics 0.2.0 (MIT; DIN rail, DIN clip, RJ45 jack),
    cadqueryhelper 2.2.6 (Apache-2.0; terrain shapes: I-beam, arch, barrier, ...),
    vibe-cading 0.1.2 (AGPL-3.0-or-later; Lego Technic beams, gears, rack, knob, hinge, hub, ...),
    cq-centrifugal-fan 0.0.8 (MIT; fan compartment, pen holder).
  Only their public classes/functions are called; none of their code is copied here.
- build123d group (bd-warehouse needs build123d's own OCP, so it runs in a separate venv:
  ``python -m venv bdw && bdw/bin/pip install bd-warehouse``):
    bd-warehouse 0.4.0 (Apache-2.0; flanges, fasteners, bearings, sprocket, gear, pipes,
    OpenBuilds plates and rails, retaining rings, shaft keys, bushings).

Each group builds what its interpreter can import; a part that fails, has more than MAX_FACES
faces or takes more than MAX_SECONDS to build is skipped with its reason. Several solids of one
part are fused into one shape (the IoU metric needs non-overlapping volume).

    PYTHONPATH=CQ_PKGS python training/bench/third_party_parts.py --out DIR       # CadQuery group
    bdw/bin/python training/bench/third_party_parts.py --out DIR                  # build123d group
    python training/bench/third_party_parts.py --out DIR --render                 # FreeCAD renders
    python -m training.evaluate --data DIR ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_FACES = 5000  # the hidden sets hold ordinary parts; a 20k-face thread says nothing about them
MAX_SECONDS = 20.0

Maker = Callable[[], object]


# ---------------------------------------------------------------- CadQuery group
def cadquery_parts() -> Iterator[tuple[str, str, Maker]]:
    """(name, class, maker) for parts of CadQuery libraries; each maker returns a Workplane or Shape."""
    try:
        from cqgridfinity import GridfinityBaseplate, GridfinityBox
    except ImportError as exc:
        print(f"cqgridfinity not importable: {exc}", file=sys.stderr)
    else:
        yield "gf_box_2x1x3", "bin", lambda: GridfinityBox(2, 1, 3).render()
        yield "gf_box_3x2x5_div", "bin", lambda: GridfinityBox(3, 2, 5, length_div=2, scoops=True).render()
        yield "gf_baseplate_3x2", "plate", lambda: GridfinityBaseplate(3, 2).render()
    try:
        from cq_electronics.mechanical.din_clip import DinClip
        from cq_electronics.mechanical.din_rail import TopHat
    except ImportError as exc:
        print(f"cq-electronics not importable: {exc}", file=sys.stderr)
    else:
        yield "din_rail_tophat_60", "profile", lambda: TopHat(60).cq_object
        yield "din_clip", "bracket", lambda: DinClip().cq_object
    try:
        from cadqueryhelper import shape as chs  # its package exports each shape's function
    except ImportError as exc:
        print(f"cadqueryhelper not importable: {exc}", file=sys.stderr)
    else:
        yield "i_beam_60", "profile", lambda: chs.i_beam(length=60, width=20, height=30, web_thickness=3,
                                                        flange_thickness=3, join_distance=2)
        yield "jersey_barrier", "profile", lambda: chs.jersey_barrier()
        yield "arch_round", "arch", lambda: chs.arch_round()
        yield "step_pyramid", "stepped", lambda: chs.step_pyramid()
        yield "teardrop", "organic", lambda: chs.teardrop()
        yield "star_prism", "prism", lambda: chs.star()
    try:
        from vibe_cading.lego.block import LegoBlock
        from vibe_cading.lego.technic_beam import LegoTechnicBeam
        from vibe_cading.lego.technic_l_liftarm import LegoTechnicLLiftarm
        from vibe_cading.mechanical.bearings import Bearing
        from vibe_cading.mechanical.enclosures.knob import RibbedKnob
        from vibe_cading.mechanical.gears.rack import RackGear
        from vibe_cading.mechanical.gears.spur import SpurGear
        from vibe_cading.mechanical.hinge import PrintInPlaceHinge
        from vibe_cading.mechanical.nuts.tnut import TNut
        from vibe_cading.mechanical.standoffs import HexStandoff
        from vibe_cading.rc.freespin_hex_hub import FreespinHexHub
    except ImportError as exc:
        print(f"vibe-cading not importable: {exc}", file=sys.stderr)
    else:
        yield "lego_brick_2x4", "block", lambda: LegoBlock.brick(2, 4).solid
        yield "technic_beam_7", "beam", lambda: LegoTechnicBeam(7).solid
        yield "technic_l_liftarm_3x5", "beam", lambda: LegoTechnicLLiftarm(3, 5).solid
        yield "vc_spur_gear_m1_z30", "gear", lambda: SpurGear(module=1, teeth=30, face_width=6, bore=5).solid
        yield "vc_rack_m2_50", "gear", lambda: RackGear(module=2, length=50, face_width=10, thickness=5).solid
        yield "vc_flanged_bearing", "turned", lambda: Bearing(5, 14, 5, flange_diameter=16,
                                                              flange_thickness=1).solid
        yield "ribbed_knob", "turned", lambda: RibbedKnob().solid
        yield "print_in_place_hinge", "hinge", lambda: PrintInPlaceHinge().solid
        yield "tnut_20", "bracket", lambda: TNut(20, 10, 4, 6, 2, thread_diameter=5).solid
        yield "hex_standoff_m3x20", "prism", lambda: HexStandoff(5.5, 20, 3).solid
        yield "freespin_hex_hub", "turned", lambda: FreespinHexHub().solid
    try:
        from cq_centrifugal_fan import shapes as cf
    except ImportError as exc:
        print(f"cq-centrifugal-fan not importable: {exc}", file=sys.stderr)
    else:
        def fan_parts() -> tuple:
            # The package's own default use case (use_cases/default.py), its measured pen and motor.
            pen_r, pen_t = 7.10, 0.89
            phb = cf.PenHolderBuilder(pen_t * 2, pen_r / 2, pen_r * 3 / 4)
            fcb = cf.FanCompartmentBuilder(pen_r * 1.2 - phb.thickness, pen_r * 3, phb.thickness,
                                           phb.pen_radius * 3 / 4)
            return phb, fcb, cf.FanMotorHolder(fcb, 8.06 / 2, 16.0)

        yield "fan_compartment", "housing", lambda: fan_parts()[1].build()
        yield "fan_motor_holder", "housing", lambda: fan_parts()[2].build()


# ---------------------------------------------------------------- build123d group
def build123d_parts() -> Iterator[tuple[str, str, Maker]]:
    """(name, class, maker) for bd_warehouse parts; each maker returns a build123d Shape."""
    try:
        from bd_warehouse import fastener as fa
        from bd_warehouse import flange as fl
    except ImportError as exc:
        print(f"bd_warehouse not importable: {exc}", file=sys.stderr)
        return
    yield "flange_weldneck_1in_150", "flange", lambda: fl.WeldNeckFlange(nps="1", flange_class=150)
    yield "flange_blind_3in_150", "flange", lambda: fl.BlindFlange(nps="3", flange_class=150)
    yield "flange_slipon_2in_300", "flange", lambda: fl.SlipOnFlange(nps="2", flange_class=300)
    yield "hex_nut_m8", "fastener", lambda: fa.HexNut("M8-1.25", "iso4032", simple=True)
    yield "washer_chamfered_m10", "fastener", lambda: fa.ChamferedWasher("M10", "iso7090")
    yield "socket_head_m5x20", "fastener", lambda: fa.SocketHeadCapScrew("M5-0.8", 20, "iso4762", simple=True)
    yield "hex_head_m8x30", "fastener", lambda: fa.HexHeadScrew("M8-1.25", 30, "iso4014", simple=True)
    yield "countersunk_m4x16", "fastener", lambda: fa.CounterSunkScrew("M4-0.7", 16, "iso10642", simple=True)
    yield "domed_cap_nut_m6", "fastener", lambda: fa.DomedCapNut("M6-1", "din1587", simple=True)
    try:
        from bd_warehouse.gear import SpurGear

        yield "bdw_spur_gear_m2_z20", "gear", lambda: SpurGear(module=2, tooth_count=20, pressure_angle=20,
                                                               thickness=8)
    except ImportError:
        pass
    try:
        from bd_warehouse.sprocket import Sprocket

        yield "sprocket_25t", "gear", lambda: Sprocket(num_teeth=25)
    except ImportError:
        pass
    try:
        from bd_warehouse.bearing import SingleRowDeepGrooveBallBearing

        yield "ball_bearing_608", "turned", lambda: SingleRowDeepGrooveBallBearing("M8-22-7")
    except ImportError:
        pass
    try:
        from bd_warehouse.open_builds import (
            CBeamEndMount,
            CBeamRiserPlate,
            EccentricSpacer,
            LBracket,
            SpacerBlock,
            VSlotLinearRail,
            XtremeSolidVWheel,
        )
    except ImportError:
        pass
    else:
        yield "vslot_2020_80", "profile", lambda: VSlotLinearRail("20x20", 80)
        yield "cbeam_end_mount", "plate", lambda: CBeamEndMount()
        yield "cbeam_riser_plate", "plate", lambda: CBeamRiserPlate()
        yield "l_bracket", "bracket", lambda: LBracket()
        yield "spacer_block", "plate", lambda: SpacerBlock()
        yield "eccentric_spacer", "turned", lambda: EccentricSpacer("6mm")
        yield "v_wheel", "turned", lambda: XtremeSolidVWheel()
    try:
        from bd_warehouse.shaft_key import ShaftKey

        yield "shaft_key_d30x40", "prism", lambda: ShaftKey(30, 40)
    except ImportError:
        pass
    try:
        from bd_warehouse.bushing import HexFlangedEccentricBushing

        yield "hex_flanged_bushing", "turned", lambda: HexFlangedEccentricBushing(8, 12, 10, 3, 17, 1)
    except ImportError:
        pass


# ---------------------------------------------------------------- building and writing
def _to_occ_shape(obj: object) -> object:
    """The OCCT TopoDS_Shape behind a CadQuery Workplane/Shape or a build123d Shape/Part."""
    if hasattr(obj, "vals"):  # a CadQuery Workplane: all its solids
        vals = [v for v in obj.vals() if hasattr(v, "wrapped")]
        if len(vals) == 1:
            return vals[0].wrapped
        import cadquery as cq

        return cq.Compound.makeCompound(vals).wrapped
    if hasattr(obj, "toCompound") and not hasattr(obj, "wrapped"):  # a CadQuery Assembly
        return obj.toCompound().wrapped
    return obj.wrapped


def _fused(shape: object) -> object:
    """One shape whose solids do not overlap: a part's several solids fused (the IoU needs volume once)."""
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Fuse
    from OCP.TopAbs import TopAbs_SOLID
    from OCP.TopExp import TopExp_Explorer

    solids = []
    explorer = TopExp_Explorer(shape, TopAbs_SOLID)
    while explorer.More():
        solids.append(explorer.Current())
        explorer.Next()
    if len(solids) <= 1:
        return solids[0] if solids else shape
    # Pairwise fuses: the list-of-shapes API moved between the OCP builds CadQuery and build123d use.
    fused = solids[0]
    for solid in solids[1:]:
        fuse = BRepAlgoAPI_Fuse(fused, solid)
        if not fuse.IsDone():
            return shape
        fused = fuse.Shape()
    return fused


def _count(shape: object, kind_name: str) -> int:
    from OCP import TopAbs
    from OCP.TopExp import TopExp_Explorer

    count, explorer = 0, TopExp_Explorer(shape, getattr(TopAbs, kind_name))
    while explorer.More():
        count += 1
        explorer.Next()
    return count


def _write_step(shape: object, path: Path) -> None:
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer

    writer = STEPControl_Writer()
    writer.Transfer(shape, STEPControl_AsIs)
    if writer.Write(str(path)) != IFSelect_RetDone:
        raise RuntimeError(f"STEP writer failed for {path}")


def build(out: Path) -> dict[str, dict]:
    """Build every part this interpreter can import; write NAME.step; return {name: facts}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    for group in (cadquery_parts, build123d_parts):
        for name, klass, make in group():
            start = time.perf_counter()
            try:
                shape = _fused(_to_occ_shape(make()))
            except Exception as exc:  # noqa: BLE001 - a library's failure skips its part, reported
                print(f"skip {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - start
            faces = _count(shape, "TopAbs_FACE")
            if faces > MAX_FACES or seconds > MAX_SECONDS or faces == 0:
                print(f"skip {name}: {faces} faces, {seconds:.1f} s", file=sys.stderr)
                continue
            _write_step(shape, out / f"{name}.step")
            written[name] = {"class": klass, "source": group.__name__.removesuffix("_parts"),
                             "faces": faces, "solids": _count(shape, "TopAbs_SOLID"),
                             "build_s": round(seconds, 2)}
            print(f"wrote {name}.step ({faces} faces, {seconds:.1f} s)")
    manifest = out / "parts.json"
    facts = json.loads(manifest.read_text()) if manifest.exists() else {}
    facts.update(written)
    facts = {name: f for name, f in facts.items() if (out / f"{name}.step").exists()}  # parts dropped since
    manifest.write_text(json.dumps(facts, indent=1, sort_keys=True), encoding="utf-8")
    # training.evaluate reports per family: the part class is the family.
    (out / "families.json").write_text(
        json.dumps({n: f["class"] for n, f in sorted(facts.items())}, indent=1), encoding="utf-8")
    return written


def render(out: Path, size: int = 448) -> list[str]:
    """FreeCAD isometric renders (training.freecad_renders' look) for every NAME.step lacking NAME.png."""
    import cadquery as cq

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file: the repo root
    from training.freecad_renders import run_freecad_batch

    out = out.resolve()
    items = []
    with tempfile.TemporaryDirectory(prefix="cadsnap-thirdparty-") as tmp:
        for step in sorted(out.glob("*.step")):
            if step.with_suffix(".png").exists():
                continue
            solids = cq.importers.importStep(str(step)).vals()
            shape = solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)
            brep = Path(tmp) / f"{step.stem}.brep"
            shape.exportBrep(str(brep))
            items.append({"name": step.stem, "brep": str(brep), "png": str(step.with_suffix(".png"))})
        if not items:
            return []
        done = run_freecad_batch(items, size, "White", 60 + 5 * len(items))
    return sorted(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for NAME.step (+ NAME.png)")
    parser.add_argument("--render", action="store_true",
                        help="render the STEP files already in --out with FreeCAD instead of building")
    args = parser.parse_args(argv)
    if args.render:
        done = render(args.out)
        print(f"rendered {len(done)} parts into {args.out}")
        return 0
    written = build(args.out)
    print(f"{len(written)} parts written into {args.out}")
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
