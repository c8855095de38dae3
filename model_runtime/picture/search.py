"""Picture -> part as an anytime search that keeps only what the picture supports.

Start: the model's valid candidates and the envelope hypotheses read from the silhouette
(``envelope.hypotheses``: box, cylinders, extruded and revolved silhouettes), each run in the sandbox,
rendered from FreeCAD's isometric camera and compared with the picture (``similarity.compare``).
Then, while the budget lasts, the best programs are improved: their numbers fitted (a coordinate
search, as ``refine``), structural edits tried (``edits``: holes where the picture shows circles,
fillets, chamfers, a shell), the fitted numbers rounded where the rounded part scores as well.

The budget is a count of **evaluations** (one program run, rendered and compared), so a score does
not depend on how busy the machine is; seconds are only a user's cap on top (``Budget``). Every
improvement of the best is reported (``on_best``) with its render; a cancel keeps the best so far.
Since the envelopes are among the starting points and the best is what is returned, the result
never scores below its envelope on the picture.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from model_runtime.picture.edits import EDIT_MARGIN
from model_runtime.picture.refine import MIN_GAIN, Parameter, parameters, substitute
from model_runtime.picture.similarity import Silhouette, Similarity, compare

SEARCH_RENDER_SIZE = 128  # px: every program in one search is rendered at one size, so scores compare
DEFAULT_EVALUATIONS = 40  # the default budget: what a 5 s job leaves the search on a quiet 2-core machine
LOW_SCORE = 0.55  # below this picture score the answer is called a guess (see ``verdict``)


@dataclass(frozen=True)
class Budget:
    """How much work the search may do: ``evaluations`` (reproducible), ``seconds`` (a cap)."""

    evaluations: int = DEFAULT_EVALUATIONS
    seconds: float | None = None


@dataclass
class Scored:
    code: str
    source: str  # "model:2", "envelope:box", "model:0+fit", "...+hole" ...
    similarity: Similarity
    exec_result: Any
    render: Image.Image | None = None
    named_only: bool = False  # fit only the numbers on `name = value` lines (envelopes, edits)
    faces: int | None = None  # the face count the numeric fit must keep (a model program's design)
    fit_from: int = 0  # only numbers after this character are fitted (an edit on a settled program)
    held: bool = False  # no answer: what the picture cannot support (``Search.hold``)

    @property
    def score(self) -> float:
        return self.similarity.score


@dataclass
class SearchResult:
    best: Scored
    envelope: Scored | None  # the best plain envelope (box or cylinder): the floor on the picture
    evaluations: int
    seconds: float
    stopped: str  # "budget", "time", "cancelled", "converged"
    history: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best score)
    steps: list[str] = field(default_factory=list)  # what improved the best, in order
    tried: list[Scored] = field(default_factory=list, repr=False)  # every program scored (diagnostics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.best.source,
            "score": self.best.score,
            "envelope": self.envelope.source if self.envelope else None,
            "envelope_score": self.envelope.score if self.envelope else None,
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "steps": self.steps,
        }


def verdict(score: float) -> dict[str, Any]:
    """Plain words about how far the picture supports the answer."""
    if score >= 0.75:
        return {"guess": False, "score": score,
                "message": f"the part matches the picture well (score {score:.2f})"}
    if score >= LOW_SCORE:
        return {"guess": False, "score": score,
                "message": f"the part matches the picture roughly (score {score:.2f}); check its features"}
    return {"guess": True, "score": score,
            "message": f"this is a guess: the part matches the picture poorly (score {score:.2f}); "
                       "its overall shape may be right, its features probably are not"}


class _OutOfBudget(Exception):
    pass


class Search:
    """One anytime search. ``run_code(code) -> ExecResult`` (raises on failure) and
    ``render(shape) -> Image`` are supplied by the caller (the sandbox pool and the renderer)."""

    def __init__(
        self,
        reference: Silhouette,
        run_code: Callable[[str], Any],
        render: Callable[[Any], Image.Image],
        budget: Budget,
        *,
        workers: int = 1,
        cancelled: Callable[[], bool] = lambda: False,
        on_best: Callable[[Scored, int], None] | None = None,
    ) -> None:
        self.reference = reference
        self.run_code = run_code
        self.render_fn = render
        self.budget = budget
        self.workers = max(1, workers)
        self.cancelled = cancelled
        self.on_best = on_best
        self.evaluations = 0
        self.t0 = time.perf_counter()
        self.best: Scored | None = None
        self.items: list[Scored] = []
        self.cache: dict[str, Scored | None] = {}
        self.history: list[tuple[int, float]] = []
        self.steps: list[str] = []
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self.stop_reason = "converged"
        self.reserve = 1  # one evaluation kept for rounding the answer's numbers
        self.final = False  # rounding: the last evaluation, allowed past the time cap

    # -- budget ---------------------------------------------------------------------------------

    def left(self) -> int:
        return self.budget.evaluations - self.reserve - self.evaluations

    def out_of_budget(self) -> bool:
        if self.cancelled():
            self.stop_reason = "cancelled"
            return True
        if self.evaluations >= self.budget.evaluations - (0 if self.final else self.reserve):
            self.stop_reason = "budget"
            return True
        if (not self.final and self.budget.seconds is not None
                and time.perf_counter() - self.t0 >= self.budget.seconds):
            self.stop_reason = "time"
            return True
        return False

    # -- evaluation -----------------------------------------------------------------------------

    def _score_shape(self, exec_result: Any) -> tuple[Similarity, Image.Image] | None:
        try:
            with self._render_lock:  # one VTK context at a time
                picture = self.render_fn(exec_result.shape())
        except Exception:  # noqa: BLE001 - a shape that cannot be rendered is no answer
            return None
        return compare(self.reference, picture), picture

    def adopt(self, code: str, source: str, exec_result: Any,
              scored: tuple[Similarity, Image.Image] | None = None, **kw: Any) -> Scored | None:
        """Score an already-run program (a model candidate); counts as one evaluation. ``scored``:
        its similarity and render when the caller already drew it at ``SEARCH_RENDER_SIZE``."""
        with self._lock:
            self.evaluations += 1
        scored = scored or self._score_shape(exec_result)
        if scored is None:
            return None
        item = Scored(code, source, scored[0], exec_result, scored[1], **kw)
        self.cache[code] = item
        self._offer(item)
        return item

    def evaluate(self, code: str, source: str, **kw: Any) -> Scored | None:
        """Run, render and compare ``code``: one evaluation (a repeat is free)."""
        if code in self.cache:
            return self.cache[code]
        if self.out_of_budget():
            raise _OutOfBudget
        with self._lock:
            self.evaluations += 1
        try:
            executed = self.run_code(code)
        except Exception:  # noqa: BLE001 - sandbox errors: the program is no answer
            self.cache[code] = None
            return None
        if kw.get("faces") is not None and executed.n_faces != kw["faces"]:
            # a model's program fitted into another face count is another design, not another size:
            # it could match the outline better while losing features, so it is never an answer
            self.cache[code] = None
            return None
        scored = self._score_shape(executed)
        if scored is None:
            self.cache[code] = None
            return None
        item = Scored(code, source, scored[0], executed, scored[1], **kw)
        self.cache[code] = item
        self._offer(item)
        return item

    def evaluate_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[Scored | None]:
        """Several programs at once across the sandbox workers (each one evaluation)."""
        budgeted = items[: max(0, self.left())]
        if not budgeted or self.out_of_budget():
            return [None] * len(items)

        def one(item: tuple[str, str, dict[str, Any]]) -> Scored | None:
            try:
                return self.evaluate(item[0], item[1], **item[2])
            except _OutOfBudget:
                return None

        with ThreadPoolExecutor(max_workers=min(self.workers, len(budgeted))) as executor:
            found = list(executor.map(one, budgeted))
        return found + [None] * (len(items) - len(budgeted))

    def hold(self, items: list[Scored]) -> None:
        """``items`` are no answers any more (what the picture cannot support); the best is chosen again."""
        for item in items:
            item.held = True
        self._offer(None)

    def _offer(self, item: Scored | None) -> None:
        with self._lock:
            if item is not None:
                self.items.append(item)
                if item.held:
                    return
            answers = [i for i in self.items if not i.held]
            if not answers:
                return
            chosen = choose(answers)
            if chosen is self.best:
                return
            self.best = chosen
            self.history.append((self.evaluations, chosen.score))
            self.steps.append(f"{chosen.source}: {chosen.score:.3f}")
        if self.on_best is not None:
            self.on_best(chosen, self.evaluations)

    # -- moves ----------------------------------------------------------------------------------

    def fit_numbers(self, start: Scored, max_evaluations: int, steps=(1.3, 1.1)) -> Scored:
        """Coordinate search over ``start``'s numbers (only its tunable lines when it has them):
        a change is kept when the picture score rises by ``MIN_GAIN`` beyond what moving the model's
        own numbers costs (``FIT_DRIFT``); a model program must keep its face count (another face
        count is another design, not another size)."""
        code = start.code
        params = [p for p in _tunable(code, start.named_only) if p.spans[0][0] >= start.fit_from]
        if not params:
            return start
        current, values = start, {i: p.value for i, p in enumerate(params)}
        spent0 = self.evaluations

        written = code.find("\n# edit:") if start.source.startswith("model") else 0
        written = len(code) if written < 0 else written
        prior = [i for i, p in enumerate(params) if p.spans[0][0] < written]

        def worth(found: Scored, vals: dict[int, float]) -> float:
            drift = sum(abs(math.log(vals[i] / params[i].value)) for i in prior
                        if params[i].value and vals[i] / params[i].value > 0)
            return found.score - FIT_DRIFT * drift

        def spent() -> bool:
            return self.evaluations - spent0 >= max_evaluations or self.out_of_budget()

        def trial(new_values: dict[int, float]) -> Scored | None:
            changes = {i: v for i, v in new_values.items() if v != params[i].value}
            program = substitute(code, changes, params)
            found = self.evaluate(program, _suffixed(start.source, "fit"),
                                  named_only=start.named_only, faces=start.faces, fit_from=start.fit_from)
            if found is not None and start.faces is not None and found.exec_result.n_faces != start.faces:
                return None
            return found

        try:
            for step in steps:
                improved_pass = True
                while improved_pass and not spent():
                    improved_pass = False
                    for i, param in enumerate(params):
                        if param.frozen or spent():
                            continue
                        # both directions at once across the workers, then keep going the better way
                        ups = {**values, i: values[i] * step}
                        downs = {**values, i: values[i] / step}
                        pair = self._pair(trial, ups, downs)
                        options = [(s, v) for s, v in zip(pair, (ups, downs), strict=True) if s is not None]
                        if not options and all(_int_literal(code, sp) for sp in param.spans):
                            param.frozen = True
                            continue
                        bar = worth(current, values) + MIN_GAIN
                        options = [(s, v) for s, v in options if worth(s, v) >= bar]
                        if not options:
                            continue
                        s, v = max(options, key=lambda o: worth(*o))
                        factor = v[i] / values[i]
                        current, values, improved_pass = s, v, True
                        while not spent():  # keep going while it pays
                            further = {**values, i: values[i] * factor}
                            s = trial(further)
                            if s is None or worth(s, further) < worth(current, values) + MIN_GAIN:
                                break
                            current, values = s, further
        except _OutOfBudget:
            pass
        return current

    def _pair(self, trial, a, b):
        if self.workers > 1:
            with ThreadPoolExecutor(max_workers=2) as executor:
                fa, fb = executor.submit(trial, a), executor.submit(trial, b)
                return fa.result(), fb.result()
        return trial(a), trial(b)

    def round_numbers(self, start: Scored) -> Scored:
        """The same program with its fitted numbers rounded (3.004 -> 3, 12.37 -> 12.5), kept when
        the rounded part scores as well (within ``MIN_GAIN``)."""
        params = _tunable(start.code, start.named_only)
        changes = {i: _nice(p.value) for i, p in enumerate(params) if _nice(p.value) != p.value}
        if not changes:
            return start
        program = substitute(start.code, changes, params)
        reason, self.final = self.stop_reason, True
        try:
            found = self.evaluate(program, start.source, named_only=start.named_only, faces=start.faces)
        except _OutOfBudget:
            return start
        finally:
            self.final, self.stop_reason = False, reason
        if found is None or found.score < start.score - MIN_GAIN:
            return start
        if start.faces is not None and found.exec_result.n_faces != start.faces:
            return start
        if self.best is start:
            self.best = found  # as good as the unrounded one: the rounded numbers are the answer
        return found


PROFILE_MARGIN = 0.1
# A model's own numbers are a prior: fitting moves one only as far as the picture pays for, each factor
# e costing FIT_DRIFT * |ln e| of score. Unpenalised, the fit followed the picture score's taste for
# thinner flanges (a skirted knob ended at 0.77 IoU, 0.83 with the prior); eval_oof 0.497 -> 0.499,
# in-family unchanged (0.05 cost a plate its boss). An edit's sizes are guesses: they fit freely.
FIT_DRIFT = 0.02
# The envelopes' numbers are read from the outline and kept as read: fitting them to the picture score
# lowered their volume IoU on every kind (box -0.02, extrusions -0.04, cylinder -0.03 on eval_oof's
# dev half, with the score up) and the dev half's mean IoU rose 0.358 -> 0.375 without it.
FIT_ENVELOPES = False
PROFILES = ("envelope:extrude", "envelope:revolve")


def is_profile(item: Scored) -> bool:
    """An extruded or revolved silhouette: it matches the outline by construction."""
    return item.source.startswith(PROFILES)


# Steps that keep a program's design: fitting its numbers, and dropping a hollow or a boss the picture
# cannot show (``edits.HIDDEN_FEATURES``).
SAME_DESIGN = ("fit", "solid", "trimmed")


def _structural_steps(item: Scored) -> list[str]:
    return [step for step in item.source.split("+")[1:] if step not in SAME_DESIGN]


def is_edited(item: Scored) -> bool:
    """A program with a structural edit in its making (``model:1+fit+corner_holes+fit``)."""
    return bool(_structural_steps(item))


def is_guess_edited(item: Scored) -> bool:
    """A structural edit that was guessed and then judged (a hub, a boss): its gain is evidence about
    the part. An edit drawn from the picture's own lines (``edits.DRAWN``) matches them by
    construction, like a profile matches the outline: its gain says the features are there, not that
    its base is."""
    from model_runtime.picture.edits import DRAWN

    return any(not step.startswith(DRAWN) for step in _structural_steps(item))


def _standing(item: Scored) -> float:
    """The score an item competes with: a structural edit must beat the rest by ``EDIT_MARGIN``."""
    return item.score - (EDIT_MARGIN if is_edited(item) else 0.0)


def choose(items: list[Scored]) -> Scored:
    """The answer among scored programs: the highest picture score, except that
    - a structural edit must beat the rest by ``edits.EDIT_MARGIN``: smaller gains were noise (a boss
      that gained 0.004 on the picture cost an in-family part 0.44 IoU);
    - a profile hypothesis must beat the rest by ``PROFILE_MARGIN``: its outline agrees with the
      picture by construction, so only its edges and shading are evidence, and on hand-written parts
      the model's candidate or the plain envelope is the better bet when they score close to it. A
      profile with a guessed structural edit is judged as an edit: what the edit changed lies inside
      the outline, so its gain is the edges' and the shading's evidence (a plate's bored boss: 0.16 ->
      0.79); one with only the edits drawn from the picture is still a profile (``is_guess_edited``:
      a weld neck's outline with its drawn holes beat the model's flange by 0.02, 0.42 -> 0.06 IoU);
      the runner-up a plain profile must beat is a model's program or a plain envelope, not an edited
      envelope; beaten, it leaves the answer to the best of the rest."""
    best = max(items, key=_standing)
    if not is_profile(best) or is_guess_edited(best):
        return best
    # the runner-up it must beat is a model's program or a plain envelope: an envelope with an edit is
    # no better bet than the profile (a hinge's box with the holes its picture draws stood 0.07 under
    # its profile and took its place: 0.84 -> 0.23 IoU); once beaten, the rest compete as usual
    others = [i for i in items if not is_profile(i)]
    plain = [i for i in others if not (i.source.startswith("envelope") and is_edited(i))]
    if not plain:
        return best
    runner_up = max(plain, key=_standing)
    if _standing(best) >= _standing(runner_up) + PROFILE_MARGIN:
        return best
    return max(others, key=_standing)


def _suffixed(source: str, what: str) -> str:
    return source if source.endswith("+" + what) else f"{source}+{what}"


def _int_literal(code: str, span: tuple[int, int]) -> bool:
    return not any(c in code[span[0] : span[1]] for c in ".eEjJ")


def _tunable(code: str, named_only: bool) -> list[Parameter]:
    params = parameters(code)
    if not named_only:
        return params
    named = _named_spans(code)
    out = []
    for p in params:
        spans = [sp for sp in p.spans if sp in named]
        if spans:  # the named occurrences move; a literal elsewhere of the same value stays
            out.append(Parameter(p.value, spans))
    return out


def _named_spans(code: str) -> set[tuple[int, int]]:
    """Character spans of the numbers on ``name = number`` lines."""
    spans, offset = set(), 0
    for line in code.splitlines(keepends=True):
        match = _NAMED.match(line)
        if match:
            spans.add((offset + match.start(1), offset + match.end(1)))
        offset += len(line)
    return spans


_NAMED = re.compile(r"^[A-Za-z_]\w*\s*=\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(?:#.*)?$")


def _nice(value: float) -> float:
    """A round number near ``value``: 1 mm steps above 10, 0.5 mm below, 0.1 below 2."""
    magnitude = abs(value)
    step = 1.0 if magnitude >= 10 else 0.5 if magnitude >= 2 else 0.1
    rounded = round(value / step) * step
    if rounded == 0:
        return value
    return round(rounded, 3)


def search(
    picture: Image.Image,
    reference: Silhouette,
    seeds: list[tuple[str, str, Any]],
    run_code: Callable[[str], Any],
    render: Callable[[Any], Image.Image],
    budget: Budget,
    *,
    workers: int = 1,
    cancelled: Callable[[], bool] = lambda: False,
    on_best: Callable[[Scored, int], None] | None = None,
    envelopes: bool = True,
    edits: bool = True,
    constraints: Any = None,
    read_envelopes: Callable[[Image.Image], list] | None = None,
) -> SearchResult | None:
    """The whole search. ``seeds``: (code, source, ExecResult[, Similarity, render]) of programs
    already run (the model's valid candidates), with their score when already drawn at
    ``SEARCH_RENDER_SIZE``; ``read_envelopes``: the picture's envelope hypotheses when it is not
    FreeCAD's isometric view (``views.straight_hypotheses``). None when nothing at all could be scored."""
    from model_runtime.picture import edits as edit_moves
    from model_runtime.picture.envelope import hypotheses

    s = Search(reference, run_code, render, budget, workers=workers, cancelled=cancelled, on_best=on_best)
    for code, source, executed, *drawn in seeds:
        if s.out_of_budget():
            break
        scored = tuple(drawn) if len(drawn) == 2 and drawn[0] is not None and drawn[1] is not None else None
        s.adopt(code, source, executed, scored, faces=executed.n_faces)
    found = (read_envelopes or hypotheses)(picture) if envelopes else []
    if found and not s.out_of_budget():
        s.evaluate_many([(h.code, f"envelope:{h.name}", {"named_only": True}) for h in found])
    if found and not s.items and not s.cancelled():
        # the time cap was spent before any envelope (a busy machine): the box, past the cap, since
        # an answer from the outline beats none
        s.final = True
        with contextlib.suppress(_OutOfBudget):
            s.evaluate(found[0].code, f"envelope:{found[0].name}", named_only=True)
        s.final = False
    if not s.items:
        return None
    # Fit the numbers of the most promising programs: the current answer, the model's best, the best
    # plain envelope and the best profile, each with a share of what is left; then the answer again
    # if it changed to one not fitted yet.
    fitted: set[str] = set()

    def best_of(kind) -> Scored | None:
        return max((p for p in s.items if kind(p)), key=lambda p: p.score, default=None)

    targets = [s.best, best_of(lambda p: p.source.startswith("model")),
               best_of(lambda p: p.source.startswith("envelope") and not is_profile(p)), best_of(is_profile)]
    targets = [t for i, t in enumerate(targets) if t is not None and all(t is not u for u in targets[:i])
               and (FIT_ENVELOPES or not t.source.startswith("envelope"))]
    for k, item in enumerate(targets + [None]):
        item = item or s.best
        if s.out_of_budget() or item is None or item.source in fitted:
            continue
        if not FIT_ENVELOPES and item.source.startswith("envelope"):
            continue
        share = max(6, s.left() // (len(targets) - k + (2 if edits else 1)))
        fitted.add(item.source)
        fitted.add(s.fit_numbers(item, share).source)
    if edits and not s.out_of_budget():
        with contextlib.suppress(_OutOfBudget):
            edit_moves.improve(s, picture, constraints)
    if s.best is not None and not s.cancelled():
        s.round_numbers(s.best)
    envelope = max((p for p in s.items if p.source.startswith("envelope") and not is_profile(p)),
                   key=lambda p: p.score, default=None)
    return SearchResult(
        best=s.best, envelope=envelope, evaluations=s.evaluations,
        seconds=time.perf_counter() - s.t0, stopped=s.stop_reason if s.out_of_budget() else "converged",
        history=s.history, steps=s.steps, tried=s.items,
    )
