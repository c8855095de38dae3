"""Export bd_warehouse's standard parts (real third-party CAD code, on PyPI) to STEP files.

bd_warehouse is built on build123d, which needs another OCP than CadQuery 2.8's, so it runs in its
own environment (``python -m venv bdw && bdw/bin/pip install bd-warehouse``); this file imports
nothing from CadSnap:

    bdw/bin/python training/bench/bd_warehouse_parts.py OUT_DIR
    python -m training.bench.parametrize --extra OUT_DIR

Each part that builds is written as ``NAME.step``; one that does not is skipped with its reason.
"""

from __future__ import annotations

import sys
from pathlib import Path


def parts():
    from bd_warehouse import fastener as fa
    from bd_warehouse import flange as fl

    yield "flange_weldneck_1in_150", lambda: fl.WeldNeckFlange(nps="1", flange_class=150)
    yield "flange_slipon_2in_300", lambda: fl.SlipOnFlange(nps="2", flange_class=300)
    yield "flange_blind_3in_150", lambda: fl.BlindFlange(nps="3", flange_class=150)
    yield "flange_socketweld_1in_600", lambda: fl.SocketWeldFlange(nps="1", flange_class=600)
    yield "flange_lapped_2in_150", lambda: fl.LappedFlange(nps="2", flange_class=150)
    yield "hex_nut_m8", lambda: fa.HexNut("M8-1.25", "iso4032", simple=True)
    yield "hex_nut_flange_m6", lambda: fa.HexNutWithFlange("M6-1", "din1665", simple=True)
    yield "washer_m6", lambda: fa.PlainWasher("M6", "iso7089")
    yield "washer_chamfered_m10", lambda: fa.ChamferedWasher("M10", "iso7090")
    yield "socket_head_m5x20", lambda: fa.SocketHeadCapScrew("M5-0.8", 20, "iso4762", simple=True)
    yield "hex_head_m8x30", lambda: fa.HexHeadScrew("M8-1.25", 30, "iso4014", simple=True)
    yield "countersunk_m4x16", lambda: fa.CounterSunkScrew("M4-0.7", 16, "iso10642", simple=True)
    yield "set_screw_m6x10", lambda: fa.SetScrew("M6-1", 10, "iso4026", simple=True)
    yield "domed_cap_nut_m6", lambda: fa.DomedCapNut("M6-1", "din1587", simple=True)
    try:
        from bd_warehouse.gear import SpurGear

        yield "spur_gear_m2_z20", lambda: SpurGear(module=2, tooth_count=20, pressure_angle=20, thickness=8)
    except ImportError:
        pass
    try:
        from bd_warehouse.sprocket import Sprocket

        yield "sprocket_25t", lambda: Sprocket(num_teeth=25)
    except ImportError:
        pass


def main(argv: list[str]) -> int:
    from build123d import export_step

    out = Path(argv[0] if argv else "bd_warehouse_steps")
    out.mkdir(parents=True, exist_ok=True)
    for name, make in parts():
        try:
            export_step(make(), str(out / f"{name}.step"))
            print(f"wrote {name}.step")
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"skip {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
