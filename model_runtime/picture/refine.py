"""Fit the numbers of a generated program to the picture: render, compare, nudge, repeat.

The model reads a part's family and layout well and its proportions poorly (a 128 px view of a
thin bracket). The program's numeric literals are its dimensions, so a coordinate search over them
that keeps a change only when the render looks more like the input picture (``similarity``) fixes
proportions without a second model call. Literals of equal value move together: a program repeats
a dimension where the part repeats it (a symmetric hole pattern, a width shared by two bodies).

Everything here is plain Python; the caller supplies ``score(code) -> float | None`` (run it in the
sandbox, render, compare), so this module needs neither the sandbox nor a renderer.
"""

from __future__ import annotations

import io
import time
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field

STEPS = (1.3, 1.1)  # multiplicative steps: coarse, then fine
MIN_GAIN = 0.002  # a change must raise the score by this much to be kept (render noise is below)


@dataclass
class Parameter:
    """One dimension of the program: every literal of one value, with where each one is written."""

    value: float
    spans: list[tuple[int, int]] = field(default_factory=list)  # character offsets in the code
    frozen: bool = False  # a change made the program fail (a count, an index): leave it alone


@dataclass(frozen=True)
class Refinement:
    code: str
    score: float
    start_score: float
    evaluations: int
    changed: int  # parameters whose value differs from the model's
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "score": self.score,
            "start_score": self.start_score,
            "evaluations": self.evaluations,
            "changed": self.changed,
            "seconds": self.seconds,
        }


# CadQuery's angle arguments (positions from 0, and keywords): an angle is no size to fit; scaling the
# 360 of a bolt circle's ``polarArray`` spread six holes over 277 degrees (weld_neck_flange, eval_oof).
ANGLE_ARGUMENTS = {"polarArray": (1, 2), "revolve": (0,), "rotate": (2,), "rotateAboutCenter": (1,),
                   "twistExtrude": (1,), "cskHole": (2,), "slot2D": (2,), "transformed": (0,)}
ANGLE_KEYWORDS = {"startAngle", "angle", "angleDegrees", "cskAngle", "rotate"}


def _is_angle(call: str | None, position: int, keyword: str | None) -> bool:
    if keyword is not None:
        return keyword in ANGLE_KEYWORDS
    return position in ANGLE_ARGUMENTS.get(call or "", ())


def _angle_literals(tokens: list[tokenize.TokenInfo]) -> set[tuple[int, int]]:
    """Where the angle arguments' numbers start (row, col): inside ``polarArray(r, 0, 360, 6)``, the
    0 and the 360; inside ``transformed(rotate=(0, 0, 45))``, the tuple; the value of a named
    dimension passed as an angle (``revolve_angle = 360`` before ``.revolve(revolve_angle)``) or
    named as one."""
    frames: list[list] = []  # per open bracket: [call name or None, argument index, keyword or None]
    out: set[tuple[int, int]] = set()
    names: set[str] = set()  # variables passed as angles
    previous: tokenize.TokenInfo | None = None
    for token in tokens:
        if token.type == tokenize.NAME and any(_is_angle(*frame) for frame in frames):
            names.add(token.string)
        if token.type == tokenize.OP and token.string in "([{":
            name = previous.string if previous is not None and previous.type == tokenize.NAME else None
            frames.append([name, 0, None])
        elif token.type == tokenize.OP and token.string in ")]}":
            if frames:
                frames.pop()
        elif token.type == tokenize.OP and token.string == "," and frames:
            frames[-1][1] += 1
            frames[-1][2] = None
        elif token.type == tokenize.OP and token.string == "=" and frames and previous is not None \
                and previous.type == tokenize.NAME:
            frames[-1][2] = previous.string
        elif token.type == tokenize.NUMBER and any(_is_angle(*frame) for frame in frames):
            out.add(token.start)
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            previous = token
    for i, token in enumerate(tokens):  # name = number, name = -number at the start of a line
        k = i - 2 if i and tokens[i - 1].string == "-" else i - 1  # the token before the number's sign
        if token.type != tokenize.NUMBER or k < 1 or tokens[k].string != "=":
            continue
        name = tokens[k - 1]
        if name.type == tokenize.NAME and name.start[1] == 0 and (
                name.string in names or "angle" in name.string.lower()):
            out.add(token.start)
    return out


def parameters(code: str) -> list[Parameter]:
    """The program's non-zero numeric literals grouped by value, largest first; angles are left out.

    Literals after ``result`` is last assigned are kept too: they are still dimensions. Strings and
    comments hold no parameters (the tokenizer skips them).
    """
    line_starts = [0]
    for line in code.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    groups: dict[float, Parameter] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    angles = _angle_literals(tokens)
    for token in tokens:
        if token.type != tokenize.NUMBER or token.start in angles:
            continue
        try:
            value = float(token.string)
        except ValueError:  # complex or otherwise odd literal: not a dimension
            continue
        if value == 0.0:
            continue
        start = line_starts[token.start[0] - 1] + token.start[1]
        end = line_starts[token.end[0] - 1] + token.end[1]
        groups.setdefault(value, Parameter(value)).spans.append((start, end))
    return sorted(groups.values(), key=lambda p: -p.value)


def _is_integer(literal: str) -> bool:
    return not any(c in literal for c in ".eEjJ")


def _literal(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if "." in text else text + ".0"


def substitute(code: str, changes: dict[int, float], params: list[Parameter]) -> str:
    """``code`` with parameter ``i`` written as ``changes[i]`` wherever it appears."""
    edits = sorted(
        (span, _literal(value)) for i, value in changes.items() for span in params[i].spans
    )
    out, last = [], 0
    for (start, end), text in edits:
        out.append(code[last:start])
        out.append(text)
        last = end
    out.append(code[last:])
    return "".join(out)


def refine(
    code: str,
    score: Callable[[str], float | None],
    *,
    start_score: float | None = None,
    max_evaluations: int = 30,
    time_budget_s: float = 3.0,
    cancelled: Callable[[], bool] = lambda: False,
) -> Refinement:
    """Coordinate search over ``code``'s dimensions for a higher ``score``; never returns a worse one.

    ``score`` returns None when the changed program fails. The search stops after
    ``max_evaluations`` calls to ``score``, after ``time_budget_s`` or when ``cancelled()``.
    """
    t0 = time.perf_counter()
    params = parameters(code)
    evaluations = 0
    if start_score is None:
        start_score = score(code)
        evaluations += 1
        if start_score is None:
            raise ValueError("the program to refine does not run")
    best_score, values = start_score, {i: p.value for i, p in enumerate(params)}

    def changed(values: dict[int, float]) -> dict[int, float]:
        return {i: v for i, v in values.items() if v != params[i].value}

    def out_of_budget() -> bool:
        return (
            evaluations >= max_evaluations
            or time.perf_counter() - t0 >= time_budget_s
            or cancelled()
        )

    for step in STEPS:
        # passes over all dimensions until one changes nothing: dimensions interact (a hole pattern
        # only fits once the plate has its length)
        pass_improved = True
        while pass_improved and not out_of_budget():
            pass_improved = False
            for i, param in enumerate(params):
                for factor in (step, 1.0 / step):
                    improved = False
                    # keep going in a direction while it pays (a dimension off by 2x needs a few steps)
                    while not param.frozen and not out_of_budget():
                        trial = {**values, i: values[i] * factor}
                        trial_score = score(substitute(code, changed(trial), params))
                        evaluations += 1
                        if trial_score is None:
                            # an integer that must stay one (a count, an index) is left alone for good
                            param.frozen = all(_is_integer(code[a:b]) for a, b in param.spans)
                            break
                        if trial_score < best_score + MIN_GAIN:
                            break
                        best_score, values, improved = trial_score, trial, True
                    pass_improved |= improved
                    if improved or out_of_budget():
                        break
                if out_of_budget():
                    break
    changes = changed(values)
    return Refinement(
        code=substitute(code, changes, params),
        score=best_score,
        start_score=start_score,
        evaluations=evaluations,
        changed=len(changes),
        seconds=time.perf_counter() - t0,
    )
