"""Seed -> program: pick a family from the seed, draw its parameters, format the code."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from training.synth.families import FAMILIES, Sampler

# The free-form family composes random operations; it gets a larger share than each named family.
FREEFORM_SHARE = 0.2
MAX_CODE_CHARS = 1200


@dataclass(frozen=True)
class SynthProgram:
    seed: int
    family: str
    code: str
    params: dict = field(hash=False)
    operations: tuple[str, ...] = ()

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


def pick_family(rng: random.Random) -> str:
    if rng.random() < FREEFORM_SHARE:
        return "freeform"
    named = sorted(name for name in FAMILIES if name != "freeform")
    return rng.choice(named)


def generate(seed: int, family: str | None = None) -> SynthProgram:
    """The program for ``seed`` (same seed, same program). ``family`` forces one family."""
    rng = random.Random(f"program:{seed}")
    name = family or pick_family(rng)
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    sampler = Sampler(rng)
    program = FAMILIES[name](sampler)
    return SynthProgram(seed=seed, family=name, code=program.code(), params=dict(sampler.params),
                        operations=tuple(program.operations()))
