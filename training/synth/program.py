"""Seed -> program: composed by the grammar or from a named family, parameters drawn, code formatted.

``family_share`` of the seeds go to the 20 named families (and the free-form one), the rest to the
compositional grammar (``training.synth.grammar``). The choice has its own random stream, so with
``family_share=1`` every seed gives exactly the program it gave before the grammar existed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from training.synth.families import FAMILIES, Sampler
from training.synth.grammar import compose

# The free-form family composes random operations; it gets a larger share than each named family.
FREEFORM_SHARE = 0.2
MAX_CODE_CHARS = 1200
# Share of seeds that go to the named families: a user's part is never one of them. Composed programs
# fail validation more often (~28 % against ~5 %), so 20 % of the seeds is about 27 % of kept samples,
# under the 30 % the mix allows.
FAMILY_SHARE = 0.2
COMPOSED = "composed"  # the family name of grammar programs in datasets and manifests


@dataclass(frozen=True)
class SynthProgram:
    seed: int
    family: str
    code: str
    params: dict = field(hash=False)
    operations: tuple[str, ...] = ()
    operation_counts: dict[str, int] = field(default_factory=dict, hash=False)  # uses per operation

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


def pick_family(rng: random.Random) -> str:
    if rng.random() < FREEFORM_SHARE:
        return "freeform"
    named = sorted(name for name in FAMILIES if name != "freeform")
    return rng.choice(named)


def is_composed(seed: int, family_share: float) -> bool:
    return family_share < 1.0 and random.Random(f"mix:{seed}").random() >= family_share


def generate(seed: int, family: str | None = None, family_share: float = FAMILY_SHARE) -> SynthProgram:
    """The program for ``seed`` (same seed and share, same program). ``family`` forces one family
    (``"composed"`` for the grammar)."""
    rng = random.Random(f"program:{seed}")
    name = family or (COMPOSED if is_composed(seed, family_share) else pick_family(rng))
    sampler = Sampler(rng)
    if name == COMPOSED:
        program = compose(sampler)
    elif name in FAMILIES:
        program = FAMILIES[name](sampler)
    else:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(sorted([*FAMILIES, COMPOSED]))}")
    counts = program.operation_counts()
    return SynthProgram(seed=seed, family=name, code=program.code(), params=dict(sampler.params),
                        operations=tuple(sorted(counts)), operation_counts=dict(sorted(counts.items())))
