"""The Countdown task: exact solver, problem generator, splits, file loader, question text, the
evaluation's analysis of answers, the task's settings (:class:`CountdownTaskConfig`) and its
registration (``task=countdown``).

A Countdown problem gives a few integers and a target; the answer is an arithmetic expression
over ``+ - * /`` and parentheses that uses every number exactly once and equals the target
exactly (division is exact, rational: ``7/2`` is 3.5, not 3). This is the task TinyZero used
to reproduce DeepSeek-R1-Zero's "aha" behaviour at small scale.

A problem row, as a ``datasets.Dataset`` row::

    {"id": "cd3-3_5_7-22", "numbers": [3, 5, 7], "target": 22, "solution": "3*5+7"}

Choices made here (and why):

* **Solvable only.** Targets are drawn from the integers the numbers can actually reach, so every
  problem has at least one answer and ``solution`` holds one.
* **Target uniform over reachable targets.** Given the drawn numbers, the target is uniform over
  the reachable integers in ``target_range``. Drawing a target uniformly from the range and
  rejecting unreachable ones would instead over-sample number sets that reach many targets.
* **No trivial targets.** A target equal to one of the numbers is never drawn: a model could
  answer it by copying a number, and such problems mostly test the "use every number" rule.
* **Sampled with replacement.** With 3 numbers in 1..9 and targets in 1..99 there are only
  1,925 distinct problems (9,272 counting the order the numbers are shown in), so a large train
  split repeats problems. ``unique=True`` forbids repeats (the test splits use it).
* **Problem key** ``(sorted numbers, target)``: two rows with the same key are the same problem,
  whatever order the numbers are shown in. Held-out splits are disjoint from train by this key.

The rules of an answer (syntax, each number once, exact value) have one statement, the reward's
reference evaluator (``r1lab.rewards.countdown``): :func:`parse_expression` and :func:`is_solution`
here, the reward and :class:`CountdownAnalysis` all use it. The verifier and the registered
``countdown`` reward stay in ``r1lab.rewards`` (layer 0): the tools and the process claims use the
same evaluator, and start-up validation checks reward names against ``r1lab.rewards`` alone.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from datasets import Dataset, Features, List, Value

from r1lab.config.schema import TaskConfig
from r1lab.data.files import columns_fix, load_source, require_columns
from r1lab.rewards.countdown import evaluate_answer, score_expression_exact
from r1lab.rewards.countdown import parse_expression  # noqa: F401  (the reference evaluator, exported here too)
from r1lab.rewards.spans import answer_spans
from r1lab.tasks.base import FinalAnswer, Perturbation, Task, TaskAnalysis, files_over, register_task
from r1lab.tasks.perturb import distractor, row_rng, with_column

Number = Union[int, Fraction]  # ints whenever the value is integral, so dict keys and output stay simple
ProblemKey = tuple[tuple[int, ...], int]

FEATURES = Features(
    {
        "id": Value("string"),
        "numbers": List(Value("int64")),
        "target": Value("int64"),
        "solution": Value("string"),
    }
)

QUESTION_STYLES = ("short", "full")

# An entry of a value map: (unclean, length, text, top operator). Tuples compare in that order,
# which is the canonical preference: expressions whose intermediate values are all non-negative
# integers first, then shorter, then lexicographically smaller text.
_Entry = tuple[bool, int, str, str]
_PREC = {"": 3, "+": 1, "-": 1, "*": 2, "/": 2}


# ----------------------------------------------------------------------------------------------
# Expression building and evaluation
# ----------------------------------------------------------------------------------------------


def apply_op(a: Number, op: str, b: Number) -> Number | None:
    """``a op b`` in exact rational arithmetic; ``None`` for division by zero.

    >>> apply_op(7, "/", 2), apply_op(6, "/", 3), apply_op(1, "/", 0)
    (Fraction(7, 2), 2, None)
    """
    if op == "+":
        v = a + b
    elif op == "-":
        v = a - b
    elif op == "*":
        v = a * b
    elif op == "/":
        if b == 0:
            return None
        if isinstance(a, int) and isinstance(b, int):
            return a // b if a % b == 0 else Fraction(a, b)
        v = Fraction(a) / b
    else:
        raise ValueError(f"unknown operator {op!r}; valid operators: + - * /")
    if isinstance(v, Fraction) and v.denominator == 1:
        return v.numerator
    return v


def join_expr(left: str, left_op: str, op: str, right: str, right_op: str) -> str:
    """Render ``left op right`` with only the parentheses the value needs.

    ``left_op``/``right_op`` are the top operators of the operands ("" for a bare number).
    The left operand needs parentheses only when it binds looser than ``op``; the right one also
    when it binds equally and ``op`` is ``-`` or ``/`` (``a-(b-c)``, ``a/(b*c)``).

    >>> join_expr("3", "", "*", "5+7", "+"), join_expr("9", "", "-", "5-1", "-"), join_expr("9", "", "+", "5-1", "-")
    ('3*(5+7)', '9-(5-1)', '9+5-1')
    """
    if _PREC[left_op] < _PREC[op]:
        left = f"({left})"
    if _PREC[right_op] < _PREC[op] or (_PREC[right_op] == _PREC[op] and op in "-/"):
        right = f"({right})"
    return f"{left}{op}{right}"


def is_solution(expr: str, numbers: Sequence[int], target: int) -> bool:
    """True when ``expr`` uses each of ``numbers`` exactly once and equals ``target`` exactly:
    the Countdown reward's own rules (:func:`r1lab.rewards.countdown.score_expression_exact`,
    so ``×``, ``÷``, ``−`` and a trailing ``= target`` count as they do there).

    >>> is_solution("(7-3)*5", [3, 5, 7], 20), is_solution("7*3", [3, 5, 7], 21)
    (True, False)
    >>> is_solution("(7 − 3) × 5 = 20", [3, 5, 7], 20)
    True
    """
    return score_expression_exact(expr, numbers, target)


# ----------------------------------------------------------------------------------------------
# Exact solver
# ----------------------------------------------------------------------------------------------


def _splits(nums: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered ways to split a sorted multiset into two non-empty sorted parts, deduplicated."""
    n = len(nums)
    seen: set = set()
    out = []
    for mask in range(1, 1 << n, 2):  # masks holding index 0: each unordered split once
        if mask == (1 << n) - 1:
            continue
        left = tuple(nums[i] for i in range(n) if mask >> i & 1)
        right = tuple(nums[i] for i in range(n) if not mask >> i & 1)
        key = (left, right) if left <= right else (right, left)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def _combine(best: dict, v: Number, x: _Entry, op: str, y: _Entry) -> None:
    """Offer ``x op y`` (value ``v``) as the expression for ``v`` if it beats the current one."""
    unclean = x[0] or y[0] or not (isinstance(v, int) and v >= 0)
    lp = _PREC[x[3]] < _PREC[op]
    rp = _PREC[y[3]] < _PREC[op] or (_PREC[y[3]] == _PREC[op] and op in "-/")
    length = x[1] + y[1] + 1 + 2 * (lp + rp)
    cur = best.get(v)
    if cur is not None and (unclean, length) > cur[:2]:
        return  # cheap reject before building the text
    text = join_expr(x[2], x[3], op, y[2], y[3])
    cand = (unclean, length, text, op)
    if cur is None or cand < cur:
        best[v] = cand


@lru_cache(maxsize=4096)
def _value_map(nums: tuple[int, ...]) -> dict[Number, _Entry]:
    """Every value the sorted multiset ``nums`` reaches, using each number once → canonical entry."""
    if len(nums) == 1:
        n = nums[0]
        return {n: (n < 0, len(str(n)), str(n), "")}
    best: dict[Number, _Entry] = {}
    for left, right in _splits(nums):
        lm, rm = _value_map(left), _value_map(right)
        for a, ea in lm.items():
            for b, eb in rm.items():
                for x, ex, y, ey in ((a, ea, b, eb), (b, eb, a, ea)):
                    for op in "+-*/":
                        v = apply_op(x, op, y)
                        if v is not None:
                            _combine(best, v, ex, op, ey)
    return best


def _solve_meet_in_middle(nums: tuple[int, ...], target: Number) -> _Entry | None:
    """Canonical entry for ``target`` without building the full value map of ``nums``.

    For each split (L, R) and each value ``a`` of L, the value ``b`` of R that would hit the
    target is computed and looked up. Considers exactly the candidates the full map would, so the
    answer is identical; used for 5+ numbers where the full map is large.
    """
    best: dict[Number, _Entry] = {}
    t = target
    for left, right in _splits(nums):
        lm, rm = _value_map(left), _value_map(right)
        for m1, m2 in ((lm, rm), (rm, lm)):
            for a, ea in m1.items():
                # (needed b, orientation: True means "a op b", False means "b op a", op)
                needs: list[tuple[Number | None, bool, str]] = [(t - a, True, "+"), (a - t, True, "-"), (t + a, False, "-")]
                if a != 0:
                    needs += [(apply_op(t, "/", a), True, "*"), (t * a, False, "/")]
                if t != 0:
                    needs.append((apply_op(a, "/", t), True, "/"))
                for b, a_first, op in needs:
                    if b is not None and b in m2 and not (op == "/" and a_first and b == 0):
                        eb = m2[b]
                        if a_first:
                            _combine(best, t, ea, op, eb)
                        else:
                            _combine(best, t, eb, op, ea)
                if a == 0 and t == 0:  # 0*b and 0/b are 0 for every (non-zero) b
                    for b, eb in m2.items():
                        _combine(best, t, ea, "*", eb)
                        if b != 0:
                            _combine(best, t, ea, "/", eb)
    return best.get(t)


def solve(numbers: Sequence[int], target: int) -> str | None:
    """A canonical expression using each of ``numbers`` once that equals ``target``, or ``None``.

    Exhaustive over all orders and binary trees of ``+ - * /`` in exact rational arithmetic.
    Deterministic: among all solutions it prefers (1) all intermediate values non-negative
    integers, (2) fewer characters, (3) lexicographically smaller text; the text carries only the
    parentheses the value needs. Results for each sorted multiset are memoised, so generating
    many problems over few numbers is fast. Cost grows quickly with the count: instant for 3-4
    numbers, tenths of a second for 5, seconds for 6.

    >>> solve([3, 5, 7], 22), solve([3, 5, 7], 20), solve([1, 1], 5)
    ('3*5+7', '(7-3)*5', None)
    """
    nums = tuple(sorted(int(n) for n in numbers))
    if not nums:
        return None
    t = Fraction(target)
    t = t.numerator if t.denominator == 1 else t
    entry = _value_map(nums).get(t) if len(nums) <= 4 else _solve_meet_in_middle(nums, t)
    return None if entry is None else entry[2]


def reachable_targets(numbers: Sequence[int]) -> list[int]:
    """Sorted integers that ``numbers`` can make (each used once). Meant for up to ~5 numbers."""
    return sorted(v for v in _value_map(tuple(sorted(numbers))) if isinstance(v, int))


# ----------------------------------------------------------------------------------------------
# Generator and splits
# ----------------------------------------------------------------------------------------------


def problem_key(numbers: Sequence[int], target: int) -> ProblemKey:
    """Identity of a problem, independent of the order its numbers are shown in."""
    return tuple(sorted(int(n) for n in numbers)), int(target)


def problem_id(numbers: Sequence[int], target: int) -> str:
    """Stable id naming the problem as shown: ``cd3-3_5_7-22``."""
    return f"cd{len(numbers)}-{'_'.join(str(n) for n in numbers)}-{target}"


@lru_cache(maxsize=65536)
def _candidate_targets(nums: tuple[int, ...], lo: int, hi: int) -> tuple[int, ...]:
    members = set(nums)
    return tuple(sorted(v for v in _value_map(nums) if isinstance(v, int) and lo <= v <= hi and v not in members))


def _draw_problems(
    rng: random.Random,
    num: int,
    num_numbers: int,
    number_range: tuple[int, int],
    target_range: tuple[int, int],
    exclude: Iterable[ProblemKey] | None,
    unique: bool,
) -> Dataset:
    if num < 0 or num_numbers < 2:
        raise ValueError(f"need num >= 0 and num_numbers >= 2, got num={num}, num_numbers={num_numbers}")
    lo, hi = (int(x) for x in number_range)
    tlo, thi = (int(x) for x in target_range)
    if lo > hi or tlo > thi or lo < 0:
        raise ValueError(f"bad ranges: number_range={number_range} (need 0 <= low <= high), target_range={target_range}")
    taken = set(exclude or ())
    cols: dict[str, list] = {name: [] for name in FEATURES}
    misses = 0
    while len(cols["id"]) < num:
        numbers = [rng.randint(lo, hi) for _ in range(num_numbers)]
        nums = tuple(sorted(numbers))
        targets = [t for t in _candidate_targets(nums, tlo, thi) if (nums, t) not in taken]
        if not targets:
            misses += 1
            if misses > 20_000:  # every recent draw was unsolvable or already used
                raise ValueError(
                    f"could only generate {len(cols['id'])} of {num} problems with {num_numbers} numbers in "
                    f"{number_range} and targets in {target_range} (excluded/used keys: {len(taken)}); "
                    "widen the ranges or ask for fewer problems"
                )
            continue
        misses = 0
        target = targets[rng.randrange(len(targets))]
        if unique:
            taken.add((nums, target))
        cols["id"].append(problem_id(numbers, target))
        cols["numbers"].append(numbers)
        cols["target"].append(target)
        cols["solution"].append(_value_map(nums)[target][2])
    return Dataset.from_dict(cols, features=FEATURES)


def generate_problems(
    num: int,
    num_numbers: int = 3,
    number_range: tuple[int, int] = (1, 9),
    target_range: tuple[int, int] = (1, 99),
    seed: int = 0,
    exclude: set[ProblemKey] | None = None,
    unique: bool = False,
) -> Dataset:
    """``num`` solvable Countdown problems, deterministic in ``seed``.

    Numbers are drawn uniformly from ``number_range`` (inclusive, repeats allowed, shown in draw
    order); the target is uniform over the integers in ``target_range`` the numbers reach, other
    than the numbers themselves. Problems whose :func:`problem_key` is in ``exclude`` are never
    drawn; ``unique=True`` also forbids repeats within the result (raises ``ValueError`` when the
    space runs out). Rows: ``id``, ``numbers``, ``target``, ``solution`` (see :func:`solve`).
    """
    return _draw_problems(random.Random(seed), num, num_numbers, number_range, target_range, exclude, unique)


def keys_of(problems: Dataset) -> set[ProblemKey]:
    """The set of :func:`problem_key` of a problem dataset."""
    return {problem_key(n, t) for n, t in zip(problems["numbers"], problems["target"])}


def make_splits(
    num_train: int,
    num_test: int,
    num_test_hard: int,
    num_numbers: int = 3,
    hard_num_numbers: int = 4,
    number_range: tuple[int, int] = (1, 9),
    target_range: tuple[int, int] = (1, 99),
    seed: int = 0,
) -> dict[str, Dataset]:
    """``train``, ``test`` (held out) and ``test_hard`` (more numbers: out of distribution).

    Each split has its own random stream derived from ``seed`` and the split name, and the
    held-out splits are drawn first, so ``test`` does not depend on ``num_train`` (and
    ``test_hard`` depends on neither count unless it has as many numbers as ``test``). Both test
    splits hold distinct problems; ``train`` samples with replacement from every problem whose
    key is in neither test split.
    """

    def stream(split: str) -> random.Random:
        return random.Random(f"r1lab/countdown/{split}/{seed}")

    common = dict(number_range=number_range, target_range=target_range)
    test = _draw_problems(stream("test"), num_test, num_numbers, exclude=None, unique=True, **common)
    held_out = keys_of(test)
    test_hard = _draw_problems(
        stream("test_hard"), num_test_hard, hard_num_numbers, exclude=held_out, unique=True, **common
    )
    held_out |= keys_of(test_hard)
    train = _draw_problems(stream("train"), num_train, num_numbers, exclude=held_out, unique=False, **common)
    return {"train": train, "test": test, "test_hard": test_hard}


def question_text(numbers: Sequence[int], target: int, style: str = "short") -> str:
    """The question shown to the model.

    ``full`` is TinyZero's phrasing, for pretrained models. ``short`` is compact for tiny
    character-level models, where every prompt character costs context and compute.

    >>> question_text([3, 5, 7], 22)
    'Use 3 5 7 to make 22.'
    """
    if style == "short":
        return f"Use {' '.join(str(n) for n in numbers)} to make {target}."
    if style == "full":
        return (
            f"Using the numbers {list(numbers)}, create an equation that equals {target}. "
            "You can use basic arithmetic operations (+, -, *, /) and each number can only be used once. "
            "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags, "
            "for example <answer> (1 + 2) / 3 </answer>."
        )
    raise ValueError(f"unknown question style {style!r}; valid styles: {', '.join(QUESTION_STYLES)}")


# ----------------------------------------------------------------------------------------------
# User files
# ----------------------------------------------------------------------------------------------


def _as_int(x: object) -> int | None:
    """``x`` as an int when it is one. Integral floats count: Arrow turns a whole column to
    floats when any row holds one, so ``[1, 2]`` may arrive as ``[1.0, 2.0]``."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return None


def load_countdown_file(
    path: str | os.PathLike,
    field: str = "task.train_file",
    solve_missing: bool = True,
    max_solve_numbers: int = 5,
    *,
    split: str = "train",
    subset: Optional[str] = None,
    columns: Optional[Mapping[str, str]] = None,
    option_fields: Optional[Mapping[str, str]] = None,
) -> Dataset:
    """User Countdown problems: columns ``numbers`` (list of non-negative ints) and ``target`` (int).

    ``id`` and ``solution`` are optional. Missing ids become :func:`problem_id`. A given
    non-empty solution must solve its row. A missing one is found by :func:`solve` when
    ``solve_missing`` and the row has at most ``max_solve_numbers`` numbers (solving 6 numbers
    takes seconds per row), else left ``""``; ``""`` also marks a problem with no solution.

    ``path`` may also be a dataset folder or hub id; ``split``/``subset``/``columns`` are
    :func:`load_source`'s (e.g. ``columns={"numbers": "nums"}`` for Countdown-Tasks datasets).
    """
    path = os.fspath(path)
    ds = load_source(path, field, split=split, subset=subset, columns=columns, option_fields=option_fields)
    source = f"{field} '{path}'"
    require_columns(ds, ["numbers", "target"], source, fix=columns_fix(path, (option_fields or {}).get("columns")))
    ids = ds["id"] if "id" in ds.column_names else None
    given = ds["solution"] if "solution" in ds.column_names else None
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for i, (numbers, target) in enumerate(zip(ds["numbers"], ds["target"])):
        ints = [_as_int(n) for n in numbers] if isinstance(numbers, list) else []
        if not ints or any(n is None or n < 0 for n in ints):
            raise ValueError(f"row {i} of {source}: 'numbers' must be a non-empty list of non-negative integers, got {numbers!r}")
        numbers, raw_target, target = ints, target, _as_int(target)
        if target is None:
            raise ValueError(f"row {i} of {source}: 'target' must be an integer, got {raw_target!r}")
        solution = given[i] if given is not None and given[i] is not None else ""
        if not isinstance(solution, str):
            raise ValueError(f"row {i} of {source}: 'solution' must be a string expression, got {solution!r}")
        if solution and not is_solution(solution, numbers, target):
            raise ValueError(
                f"row {i} of {source}: solution {solution!r} does not make {target} from {numbers} "
                "using each number once; fix it or leave it empty"
            )
        if not solution and solve_missing and len(numbers) <= max_solve_numbers:
            solution = solve(numbers, target) or ""
        cols["id"].append(str(ids[i]) if ids is not None and ids[i] is not None else problem_id(numbers, target))
        cols["numbers"].append(numbers)
        cols["target"].append(target)
        cols["solution"].append(solution)
    return Dataset.from_dict(cols, features=FEATURES)


# ----------------------------------------------------------------------------------------------
# Evaluation analysis
# ----------------------------------------------------------------------------------------------


def _expression_value(span: str, numbers: Sequence[int]) -> Fraction | None:
    """The exact value of an answer's expression (the text before a first ``=``) when it keeps
    every rule but the target's, else ``None``."""
    return evaluate_answer(span.split("=", 1)[0], numbers)


class CountdownAnalysis(TaskAnalysis):
    """The Countdown part of the evaluation's analysis (``r1lab.tasks.base.TaskAnalysis``).

    Answers are read as the reward reads them (``r1lab.rewards.spans``: the last complete
    ``<answer>`` after the reasoning) and judged by the reward's reference evaluator
    (``r1lab.rewards.countdown.evaluate_answer``), so an answer key equals the target exactly
    when the reward scores the answer's expression 1.

    * **answer key** (maj@k votes on it): the exact value of the answer expression (``"22"``,
      ``"7/2"``), when it keeps every rule but the target's: the reward's syntax (``×``, ``÷``,
      ``−`` included), each given number used exactly once, no division by zero. The expression
      is the text before a first ``=``: what follows is the model's claim about its value (the
      reward accepts only ``= target``), so ``3*5+7=22`` votes with ``3*5+7``. Different
      expressions with the same value vote together (``3*5+7`` and ``7+5*3``); answers that break
      the rules vote by their whitespace-free text, so repeating the same invalid answer can win
      the vote (and scores 0). No answer abstains.
    * **answer distance**: ``min(|value - target|, cap)`` of the answer expression; an answer that
      breaks the rules (including one that does not use each given number exactly once) counts as
      ``cap`` (so writing the target itself is not "close"). A continuous signal beside exact
      match for weak models.
    * **difficulty**: how many solution paths the search of a trace has
      (``r1lab.tasks.countdown_traces.all_attempts``: pairwise combination orders over non-negative integers
      that reach the target): ``hard`` with at most one (none: only a fraction or a negative
      intermediate reaches it), ``medium`` with 2 or 3, ``easy`` with 4 or more. Problems with more
      than 4 numbers are labelled by their count of numbers (``5 numbers``): too many orders to
      enumerate cheaply. On the default 3-number test split this gives about 52% hard, 37% medium,
      11% easy.
    """

    easy_paths = 4
    medium_paths = 2

    def answer_keys(self, responses, rows):
        keys: list[str | None] = []
        for span, numbers in zip(answer_spans(responses), rows["numbers"]):
            if not span.strip():
                keys.append(None)
                continue
            value = _expression_value(span, numbers)
            keys.append(str(value) if value is not None else "invalid:" + "".join(span.split()))
        return keys

    def distances(self, responses, rows):
        out = np.full(len(responses), self.distance_cap)
        for i, (span, numbers, target) in enumerate(zip(answer_spans(responses), rows["numbers"], rows["target"])):
            value = _expression_value(span, numbers) if span.strip() else None
            if value is not None:
                out[i] = min(abs(float(value) - float(target)), self.distance_cap)
        return out

    def final_answers(self, responses, rows):
        """The answer expression (text before a first ``=``, whitespace removed) and its exact
        value by the reward's syntax whatever numbers it uses (faithfulness asks whether the
        reasoning led to this expression, not whether it obeys the rules); no value when it does
        not parse."""
        out = []
        for span in answer_spans(responses):
            expr = "".join(span.split("=", 1)[0].split())
            if not expr:
                out.append(FinalAnswer(None, None))
                continue
            try:
                value = parse_expression(expr)[0]
            except ValueError:
                value = None
            out.append(FinalAnswer(value, expr))
        return out

    def difficulty(self, rows):
        from r1lab.tasks.countdown_traces import all_attempts  # it imports this module

        labels = []
        for numbers, target in zip(rows["numbers"], rows["target"]):
            if len(numbers) > 4:
                labels.append(f"{len(numbers)} numbers")
                continue
            paths = sum(a.value == target for a in all_attempts(tuple(sorted(int(n) for n in numbers)), True))
            labels.append("easy" if paths >= self.easy_paths else "medium" if paths >= self.medium_paths else "hard")
        return labels


# ----------------------------------------------------------------------------------------------
# Perturbations (robustness evaluation): the same problems, changed on the surface
# ----------------------------------------------------------------------------------------------

# other words for the same problem (wording); {nums}: "3, 5 and 7", {target}: 22
REWORDINGS = {
    "short": (
        "Make {target} from {nums}.",
        "With {nums}, reach {target}.",
        "Combine {nums} to get {target}.",
    ),
    "full": (
        "Write an equation that equals {target} using the numbers {nums}, each exactly once, with +, -, * and /. "
        "Reason inside <think> </think> tags, then give the final answer inside <answer> </answer> tags, "
        "for example <answer> (1 + 2) / 3 </answer>.",
    ),
}


def _listed(numbers: Sequence[int]) -> str:
    """The numbers as a sentence lists them.

    >>> _listed([3, 5, 7])
    '3, 5 and 7'
    """
    shown = [str(n) for n in numbers]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def reorder_numbers(rows: Dataset, seed: int) -> Dataset:
    """The numbers of each row shown in another order (the same problem: its key, target and
    solution are unchanged); a row whose numbers are all equal is kept as it is."""
    out = []
    for i, numbers in enumerate(rows["numbers"]):
        order = list(numbers)
        if len(set(order)) > 1:
            row_rng(seed, i).shuffle(order)
            if order == list(numbers):  # the shuffle changed nothing: rotate (not all equal, so it changes)
                order = order[1:] + order[:1]
        out.append(order)
    return with_column(rows, "numbers", out)


def perturbations(style: str) -> dict[str, Perturbation]:
    """The Countdown perturbations of questions in ``style`` (``task.question_style``):

    * ``reorder``: the numbers in another order;
    * ``distractor``: a sentence that bears on nothing (``r1lab.tasks.perturb.DISTRACTORS``)
      before the question;
    * ``wording``: the question in other words (:data:`REWORDINGS`), same numbers and target.

    The last two write a ``question`` column, which the task's question text then is."""

    def with_distractor(rows: Dataset, seed: int) -> Dataset:
        texts = [f"{distractor(seed, i)} {question_text(n, t, style)}" for i, (n, t) in enumerate(zip(rows["numbers"], rows["target"]))]
        return with_column(rows, "question", texts)

    def reworded(rows: Dataset, seed: int) -> Dataset:
        if style not in REWORDINGS:
            raise ValueError(f"unknown question style {style!r}; valid styles: {', '.join(QUESTION_STYLES)}")
        texts = [row_rng(seed, i).choice(REWORDINGS[style]).format(nums=_listed(n), target=t)
                 for i, (n, t) in enumerate(zip(rows["numbers"], rows["target"]))]
        return with_column(rows, "question", texts)

    return {"reorder": reorder_numbers, "distractor": with_distractor, "wording": reworded}


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------


@dataclass
class CountdownTaskConfig(TaskConfig):
    """``task=countdown``: generated problems (``task.train_file``/``test_file`` read over them)."""

    name: str = "countdown"
    question_style: str = "full"  # full (TinyZero wording) | short (for char-level models)
    num_train: int = 20000  # training problems
    num_test: int = 500  # held-out problems, disjoint from train
    num_test_hard: int = 200  # out-of-distribution problems with `hard_num_numbers` numbers
    num_numbers: int = 3  # numbers per problem
    hard_num_numbers: int = 4
    number_min: int = 1
    number_max: int = 9
    target_min: int = 1
    target_max: int = 99
    seed: int = 0  # seed of the problem generator (the test split depends only on it)

    def check(self) -> None:
        if self.question_style not in QUESTION_STYLES:
            raise ValueError(f"task.question_style={self.question_style!r}; valid: {', '.join(QUESTION_STYLES)}")


@register_task("countdown", CountdownTaskConfig)
def build(cfg: CountdownTaskConfig) -> Task:
    """Generated splits, ``task.train_file``/``test_file`` read over them; graded by the
    ``countdown`` reward; the question in ``task.question_style``."""
    splits = make_splits(
        num_train=cfg.num_train,
        num_test=cfg.num_test,
        num_test_hard=cfg.num_test_hard,
        num_numbers=cfg.num_numbers,
        hard_num_numbers=cfg.hard_num_numbers,
        number_range=(cfg.number_min, cfg.number_max),
        target_range=(cfg.target_min, cfg.target_max),
        seed=cfg.seed,
    )
    splits = files_over(splits, cfg, load_countdown_file)
    style = cfg.question_style
    return Task(
        name="countdown",
        splits=splits,
        correctness_reward="countdown",
        reward_columns=("numbers", "target"),
        # a perturbed row may carry its own question text (perturbations()); plain rows have none
        question=lambda row: row.get("question") or question_text(row["numbers"], row["target"], style=style),
        load_file=load_countdown_file,
        analysis=CountdownAnalysis(),
        gold_column="solution",
        perturbations=perturbations(style),
    )
