"""Countdown verifier: is the answer an arithmetic expression that uses each given number once
and equals the target? Vectorized over the whole batch.

Rules (a completion scores 1.0 only if all hold, else 0.0):

* The answer is the last complete ``<answer>...</answer>`` after the last ``</think>`` (a
  ``<think>`` that never closes ends at the first ``<answer>``): the policy of every task,
  :mod:`r1lab.rewards.spans`. None, empty or unclosed -> 0.
* It is an expression of non-negative integer literals, binary ``+ - * /``, parentheses and
  ASCII whitespace. ``×``, ``÷``, ``−`` (U+2212) count as ``*``, ``/``, ``-``. An optional
  trailing ``= N`` is allowed only when ``N`` is the target. Anything else -> 0: letters,
  ``**``, ``^``, ``.``, ``%``, unary ``-``/``+``, implicit multiplication (``2(3)``,
  ``(2)(3)``), empty parentheses, literals with a leading zero (``07``; Python rejects them too).
* The multiset of literals equals the multiset of given numbers (each used exactly once, so
  ``25`` is not ``2`` and ``5``).
* It evaluates **exactly** (rational arithmetic) to the target; division by zero -> 0.

How. Per completion, Python does only three ``rfind`` calls and one slice (``answer_spans``; an
``in`` and a ``find`` more when there is no ``</think>``).
The short spans are joined into one byte array and everything else runs on numpy arrays:

1. *Lex* (``_lex``, per byte): a 256-entry class table; a token starts at every non-space byte
   that does not continue a digit run. Literals are parsed by a Horner loop over digit positions.
2. *Check syntax* (``_check_syntax``, per token): a table of allowed (previous, current) token
   pairs rejects every forbidden construct above; one cumulative sum of parentheses over the
   whole batch, minus each row's starting value, checks balance (``np.minimum.reduceat`` for
   "never below 0"). ``_route`` then picks the rows the int64 path decides.
3. *Flatten* (``_flatten``): with syntax valid, dropping the parentheses leaves
   ``v0 op v1 op ... v(n-1)``; each operator gets the priority ``2 * paren_depth + (1 if * or /)``.
   The parse tree is then fixed by the priorities (the root is the rightmost lowest-priority
   operator), so applying operators by decreasing (priority, leftmost) is a valid evaluation
   order: the next one's operands are always finished values. That order is one argsort;
   ``n - 1`` vectorized steps evaluate every row at once, whatever the parenthesis depth: 1,000
   nested parentheses cost one cumulative sum, not 1,000 steps (Python's parser refuses that
   depth).
4. *Evaluate* (``_evaluate``) on int64 numerator/denominator arrays (non-integers gcd-reduced
   after each step). Before each step a float64 estimate of every product checks it stays below
   2**62, so int64 never wraps; rows past that bound (and rows with literals or numbers beyond
   int64, or more than ``_MAX_FAST_NUMBERS`` numbers) go to the exact slow path: the reference
   evaluator (``evaluate_answer``, ``fractions.Fraction``, literals capped at ``MAX_SLOW_DIGITS``
   digits), the one statement of these rules that the data generator and the evaluation use too.
   A wrong 1 is impossible and nothing is ever executed.

Cost is linear in the total length of the answer spans, so every call has bounded wall time.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch

from r1lab.rewards.spans import answer_spans
from r1lab.rewards.registry import register_reward

# Token types. Byte classes use the same codes (WS and BAD are never kept as tokens that pass).
NUM, ADD, SUB, MUL, DIV, LP, RP, EQ, BAD, WS, START = range(11)
_NTYPES = 11

# Byte -> class. Bytes 128..255 only occur on the non-ASCII path, where code points below 256
# are kept as they are (so U+00D7 '×' and U+00F7 '÷' land here) and all others become 128.
_CLASS = np.full(256, BAD, dtype=np.uint8)
_CLASS[ord("0") : ord("9") + 1] = NUM
for _ch in " \t\n\r\f\v":
    _CLASS[ord(_ch)] = WS
for _ch, _t in (("+", ADD), ("-", SUB), ("*", MUL), ("/", DIV), ("(", LP), (")", RP), ("=", EQ)):
    _CLASS[ord(_ch)] = _t
_CLASS[0xD7] = MUL  # ×
_CLASS[0xF7] = DIV  # ÷
_MINUS_SIGN = 0x2212  # −, mapped to '-' before classing

# _ALLOWED[prev, cur]: may token `cur` follow token `prev`? (START = beginning of the answer.)
# Rejects unary signs (op after START/op/'('), '**' (op op), implicit multiplication (NUM '(',
# ')' '(', NUM NUM), empty parentheses ('(' ')'), and '=' anywhere but after a full operand.
_ALLOWED = np.zeros((_NTYPES, _NTYPES), dtype=bool)
_OPS = (ADD, SUB, MUL, DIV)
for _prev in (START, LP, *_OPS):
    _ALLOWED[_prev, [NUM, LP]] = True
for _prev in (NUM, RP):
    _ALLOWED[_prev, [*_OPS, RP, EQ]] = True
_ALLOWED[EQ, NUM] = True
_PAIR_OK = np.zeros(256, dtype=bool)  # indexed by prev * 16 + cur
for _prev in range(_NTYPES):
    _PAIR_OK[_prev * 16 : _prev * 16 + _NTYPES] = _ALLOWED[_prev]
_CAN_END = np.zeros(256, dtype=bool)
_CAN_END[[NUM, RP]] = True
_DEPTH_DELTA = np.zeros(256, dtype=np.int8)
_DEPTH_DELTA[LP], _DEPTH_DELTA[RP] = 1, -1
_IS_MUL_OR_DIV = np.zeros(256, dtype=bool)
_IS_MUL_OR_DIV[[MUL, DIV]] = True
_ADD_SIGN = np.zeros(256, dtype=np.int64)
_ADD_SIGN[ADD], _ADD_SIGN[SUB] = 1, -1
_DIGIT_VALUE = (np.arange(256) - ord("0")).astype(np.int64)
_IS_VALUE_OR_OP = np.zeros(256, dtype=bool)
_IS_VALUE_OR_OP[[NUM, *_OPS]] = True

_MAX_FAST_DIGITS = 18  # 10**18 - 1 < 2**63
# The fast evaluator takes (numbers - 1) whole-batch steps, so one row with thousands of numbers
# must not set the pace for the batch: such rows (never real Countdown) take the exact path.
_MAX_FAST_NUMBERS = 16
_PRODUCT_LIMIT = float(2**62)  # int64 headroom: |a*b| < 2**62 so a*b +- c*d < 2**63
MAX_SLOW_DIGITS = 1000  # longer literals score 0 (keeps the exact path's cost bounded)


def countdown_reward(
    completions: Sequence[str], numbers: Sequence[Sequence[int]], targets: Sequence[int]
) -> torch.Tensor:
    """Score Countdown completions.

    Args:
        completions: N model outputs.
        numbers: N lists of the given numbers (each must be used exactly once).
        targets: N target values.

    Returns:
        ``[N]`` float32 tensor, 1.0 where the answer is correct, else 0.0.

    >>> countdown_reward(["<answer>(6 - 2) × 25</answer>", "<answer>6*2*25</answer>"],
    ...                  [[2, 6, 25], [2, 6, 25]], [100, 100]).tolist()
    [1.0, 0.0]
    """
    n = len(completions)
    if len(numbers) != n or len(targets) != n:
        raise ValueError(f"got {n} completions, {len(numbers)} numbers, {len(targets)} targets")
    spans = answer_spans(completions)
    return torch.from_numpy(_score_spans(spans, numbers, targets).astype(np.float32))


@register_reward("countdown")
def countdown(completions: Sequence[str], *, numbers: Sequence[Sequence[int]], target: Sequence[int], **_) -> torch.Tensor:
    """Registry entry: dataset columns ``numbers`` and ``target``; returns ``[N]`` float32."""
    return countdown_reward(completions, numbers, target)


# ---------------------------------------------------------------------------------------------
# Vectorized path


def _score_spans(spans: list[str], numbers: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """``[N]`` bool: is each answer span a correct Countdown expression? The four steps of the
    module docstring: lex, check syntax, flatten, evaluate (fast rows), then the exact path."""
    n = len(spans)
    lens = np.fromiter(map(len, spans), dtype=np.int64, count=n)  # [N] chars == bytes below
    buf = _span_bytes("".join(spans))  # [B] uint8
    target, target_ok = _to_int64(targets)  # [N]
    given_len, given_flat, given_ok = _flatten_numbers(numbers, n)
    result = np.zeros(n, dtype=bool)
    tok = _lex(buf, lens, n)
    if tok is None:
        return result
    syntax = _check_syntax(tok, n)
    is_rhs, fast, slow = _route(tok, syntax, target, target_ok, given_len, given_ok)
    rows = np.flatnonzero(fast)  # [V]
    if len(rows):
        values, keys = _flatten(tok, syntax, fast, is_rhs, rows, given_len)  # [V, W], [V, W-1]
        given = _given_matrix(given_len, given_flat, rows, values.shape[1])  # [V, W], padded with -1
        multiset_ok = (np.sort(values, axis=1) == np.sort(given, axis=1)).all(axis=1)
        num, den, bad, overflow = _evaluate(values, keys)
        result[rows] = multiset_ok & ~bad & ~overflow & (den == 1) & (num == target[rows])
        slow[rows[multiset_ok & ~bad & overflow]] = True
    # The exact path for the rare rows the int64 path cannot decide.
    for i in np.flatnonzero(slow).tolist():
        result[i] = score_expression_exact(spans[i], numbers[i], targets[i])
    return result


@dataclass
class _Tokens:
    """The batch's tokens in order (``T`` tokens, ``M`` of them literals, ``R`` rows with tokens)."""

    buf: np.ndarray  # [B] uint8, the spans joined (``_span_bytes``)
    type: np.ndarray  # [T] uint8 token type
    row: np.ndarray  # [T] int32 row of each token
    first: np.ndarray  # [R] index of the first token of each row that has tokens
    last: np.ndarray  # [R] index of its last token
    rows: np.ndarray  # [R] those rows
    is_num: np.ndarray  # [T] bool, literal tokens
    num_start: np.ndarray  # [M] byte offset of each literal
    num_len: np.ndarray  # [M] its digits
    num_val: np.ndarray  # [M] int64 value (meaningless past _MAX_FAST_DIGITS digits)
    num_row: np.ndarray  # [M] its row


@dataclass
class _Syntax:
    ok: np.ndarray  # [N] bool, the row's tokens form a valid expression (with an optional '= N')
    eq_idx: np.ndarray  # [E] index of each '=' token
    is_last: np.ndarray  # [T + 1] bool, the token ends its row
    csum: np.ndarray  # [T] int32 running parenthesis depth over the whole batch
    base: np.ndarray  # [R] that sum before each row's first token (its depth 0)


def _lex(buf: np.ndarray, lens: np.ndarray, n: int) -> _Tokens | None:
    """Step 1: a token starts at every non-space byte that does not continue a digit run; literals
    are parsed by :func:`_parse_literals`. ``None`` when the batch holds no token.
    (On bools, ``a > b`` is ``a & ~b`` in one pass.)"""
    if len(buf) == 0:
        return None
    cls = _CLASS[buf]  # [B]
    is_digit = cls == NUM
    cont = np.empty(len(buf), dtype=bool)  # digit preceded by a digit of the same span
    cont[0] = False
    np.logical_and(is_digit[1:], is_digit[:-1], out=cont[1:])
    cont[(np.cumsum(lens) - lens)[lens > 0]] = False
    tok_pos = np.flatnonzero((cls != WS) > cont)  # [T] byte offset of each token
    ttype = cls[tok_pos]  # [T]
    trow = np.repeat(np.arange(n, dtype=np.int32), lens)[tok_pos]  # [T] row of each token
    n_tok = len(tok_pos)
    if n_tok == 0:
        return None
    # Literals: a digit run ends where the next byte does not continue it.
    is_num = ttype == NUM  # [T]
    num_start = tok_pos[is_num]  # [M]
    run_end = np.empty(len(buf), dtype=bool)
    np.greater(is_digit[:-1], cont[1:], out=run_end[:-1])
    run_end[-1] = is_digit[-1]
    num_len = np.flatnonzero(run_end) - num_start + 1  # [M]
    num_val = _parse_literals(buf, num_start, num_len)  # [M] int64 (garbage where too long)
    first = np.empty(n_tok, dtype=bool)
    first[0] = True
    np.not_equal(trow[1:], trow[:-1], out=first[1:])
    first_idx = np.flatnonzero(first)  # [R]
    last_idx = np.append(first_idx[1:] - 1, n_tok - 1)  # [R]
    return _Tokens(buf, ttype, trow, first_idx, last_idx, trow[first_idx], is_num, num_start, num_len, num_val, trow[is_num])


def _check_syntax(tok: _Tokens, n: int) -> _Syntax:
    """Step 2, per token: allowed (previous, current) pairs, allowed last tokens, no leading zero,
    '=' only second to last, parentheses balanced."""
    n_tok = len(tok.type)
    prev = np.empty(n_tok, dtype=np.uint8)
    prev[1:] = tok.type[:-1]
    prev[tok.first] = START
    ok = _PAIR_OK[prev * 16 + tok.type]  # [T]
    syntax_ok = np.zeros(n, dtype=bool)
    syntax_ok[tok.rows] = _CAN_END[tok.type[tok.last]]
    syntax_ok[tok.row[~ok]] = False
    syntax_ok[tok.num_row[(tok.num_len > 1) & (tok.buf[tok.num_start] == ord("0"))]] = False  # leading zero
    # '=' must be second to last: "... = N" (pairs already force a literal right after it).
    eq_idx = np.flatnonzero(tok.type == EQ)
    is_last = np.zeros(n_tok + 1, dtype=bool)
    is_last[tok.last] = True
    syntax_ok[tok.row[eq_idx[~is_last[eq_idx + 1]]]] = False
    # Parentheses: with the running sum over the whole batch, a row's depth is the sum minus the
    # sum before its first token; it must never dip below 0 and must end at 0.
    delta = _DEPTH_DELTA[tok.type]  # [T] int8
    csum = np.cumsum(delta, dtype=np.int32)  # [T]
    base = csum[tok.first] - delta[tok.first]  # [R]
    syntax_ok[tok.rows[(np.minimum.reduceat(csum, tok.first) < base) | (csum[tok.last] != base)]] = False
    return _Syntax(syntax_ok, eq_idx, is_last, csum, base)


def _route(
    tok: _Tokens, syntax: _Syntax, target: np.ndarray, target_ok: np.ndarray, given_len: np.ndarray, given_ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rows the int64 path decides: ``is_rhs`` ``[T]`` (the literal of '= N'), ``fast`` and
    ``slow`` ``[N]``. A row needs valid syntax and as many literals as numbers; its '= N' must
    equal the target; values beyond int64 or too many numbers send it to the exact path."""
    n = len(target)
    is_rhs = np.zeros(len(tok.type), dtype=bool)
    is_rhs[syntax.eq_idx[~syntax.is_last[syntax.eq_idx]] + 1] = True
    rhs_in_num = is_rhs[tok.is_num]  # [M]
    rhs_ok = np.ones(n, dtype=bool)
    rhs_rows = tok.num_row[rhs_in_num]
    rhs_ok[rhs_rows] = tok.num_val[rhs_in_num] == target[rhs_rows]
    n_lit = np.bincount(tok.num_row[~rhs_in_num], minlength=n)  # [N]
    count_ok = syntax.ok & (n_lit == given_len)
    big_literal = np.zeros(n, dtype=bool)
    big_literal[tok.num_row[tok.num_len > _MAX_FAST_DIGITS]] = True
    slow = count_ok & (big_literal | ~given_ok | ~target_ok | (given_len > _MAX_FAST_NUMBERS))
    fast = count_ok & rhs_ok & ~slow
    return is_rhs, fast, slow


def _flatten(
    tok: _Tokens, syntax: _Syntax, fast: np.ndarray, is_rhs: np.ndarray, rows: np.ndarray, given_len: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: the fast ``rows`` as ``v0 op1 v1 ...``: values ``[V, W]`` and operator keys
    ``[V, W-1]`` (both padded with -1). Syntax is valid there, so each row keeps exactly
    ``2 * numbers - 1`` tokens, alternating literal and operator ('=' and its literal dropped)."""
    kidx = np.flatnonzero(fast[tok.row] & _IS_VALUE_OR_OP[tok.type] & ~is_rhs)  # [K]
    width = int(given_len[rows].max())
    kept = 2 * given_len[rows] - 1  # [V]
    vrow = np.repeat(np.arange(len(rows)), kept)  # [K]
    pos = np.arange(len(kidx)) - np.repeat(np.cumsum(kept) - kept, kept)  # [K]
    tok_val = np.zeros(len(tok.type), dtype=np.int64)
    tok_val[tok.is_num] = tok.num_val
    # Operators: priority 2 * depth + (1 for * and /), tie broken by position (leftmost
    # first) and the op code in the low bits, so one argmax finds the next operator.
    row_base = np.zeros(len(fast), dtype=np.int32)
    row_base[tok.rows] = syntax.base
    kdepth = syntax.csum[kidx].astype(np.int64) - row_base[tok.row[kidx]]
    ktype = tok.type[kidx]
    key = ((2 * kdepth + (ktype >= MUL)) * 64 + (63 - pos // 2)) * 8 + ktype
    flat = np.full((len(rows), 2 * width), -1, dtype=np.int64)  # [V, 2W]: v0 op1 v1 ... pad
    flat.ravel()[vrow * (2 * width) + pos] = np.where(pos & 1, key, tok_val[kidx])
    return flat[:, 0::2], flat[:, 1:-1:2]


def _span_bytes(joined: str) -> np.ndarray:
    """One byte per character: ASCII as is, code points < 256 kept, U+2212 -> '-', others -> 128."""
    if joined.isascii():  # O(1) in CPython; the common case, a plain copy
        return np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    out = np.where(cp < 256, cp, 128).astype(np.uint8)
    out[cp == _MINUS_SIGN] = ord("-")
    return out


def _parse_literals(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``[M]`` int64 values of the digit runs ``buf[start:start+length]`` (Horner, vectorized
    over runs; each pass keeps only the runs that are still longer, so one long run costs its
    own digits, not a pass over every literal per digit). Runs longer than
    ``_MAX_FAST_DIGITS`` get a meaningless value; callers route them to the exact path."""
    val = _DIGIT_VALUE[buf[start]]
    longer = np.flatnonzero(length > 1)  # runs with a digit at offset j (j = 1 first)
    for j in range(1, _MAX_FAST_DIGITS):
        if len(longer) == 0:
            break
        val[longer] = val[longer] * 10 + _DIGIT_VALUE[buf[start[longer] + j]]
        longer = longer[length[longer] > j + 1]
    return val


def _to_int64(values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` int64 array and ``[N]`` bool "fits" mask; non-fitting entries become 0."""
    try:
        return np.fromiter(values, dtype=np.int64, count=len(values)), np.ones(len(values), dtype=bool)
    except (OverflowError, TypeError, ValueError):
        fits = [isinstance(v, (int, np.integer)) and -(2**63) <= int(v) < 2**63 for v in values]
        arr = np.array([int(v) if f else 0 for v, f in zip(values, fits)], dtype=np.int64)
        return arr, np.array(fits, dtype=bool)


def _flatten_numbers(numbers: Sequence[Sequence[int]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Given numbers as ``[N]`` lengths, ``[sum(lengths)]`` flat int64 values, ``[N]`` fits mask."""
    given_len = np.fromiter(map(len, numbers), dtype=np.int64, count=n)
    try:  # the common case: one C-level pass
        flat = np.fromiter(itertools.chain.from_iterable(numbers), dtype=np.int64, count=int(given_len.sum()))
        return given_len, flat, np.ones(n, dtype=bool)
    except (OverflowError, TypeError, ValueError):
        flat, fits = _to_int64(list(itertools.chain.from_iterable(numbers)))
    row_fits = np.ones(n, dtype=bool)
    row_fits[np.repeat(np.arange(n), given_len)[~fits]] = False
    return given_len, flat, row_fits


def _given_matrix(given_len: np.ndarray, flat: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """``[V, width]`` given numbers of ``rows``, padded with -1 like the literal matrix."""
    offsets = np.cumsum(given_len) - given_len
    lens = given_len[rows]
    r = np.repeat(np.arange(len(rows)), lens)
    col = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    out[r, col] = flat[np.repeat(offsets[rows], lens) + col]
    return out


def _evaluate(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``v0 op1 v1 ... `` per row, applying operators in decreasing key order
    (highest priority, then leftmost).

    The keys never change, so the order of application is one argsort up front. Each step then
    merges two adjacent segments of values; a segment's value and the index of its other end
    are stored at both of its ends, so the operands of operator ``j`` sit at slots ``j`` and
    ``j + 1`` and no array is ever shifted.

    Args:
        values: ``[V, W]`` int64 literals (padding past each row's count is ignored).
        keys: ``[V, W-1]`` int64 operator keys ``(priority * 64 + 63 - index) * 8 + op code``,
            -1 for padding.

    Returns:
        ``num``, ``den`` (``[V]`` int64, reduced, ``den > 0``), ``bad`` (``[V]`` division by zero)
        and ``overflow`` (``[V]`` a step would have left the exact int64 range; undecided).
    """
    # Column-major ([W, V]) so that every step works on long contiguous vectors.
    v, width = values.shape
    r = np.arange(v)
    num = np.empty((width + 1, v), dtype=np.int64)  # slot `width` is a sink for finished rows
    num[:width] = values.T
    den = np.ones_like(num)
    end = np.repeat(np.arange(width + 1), v).reshape(width + 1, v)  # other end of each segment
    n_ops = (keys >= 0).sum(axis=1)  # [V]
    order = np.ascontiguousarray(np.argsort(-keys, axis=1, kind="stable").T)  # [W-1, V]
    opcode = np.ascontiguousarray(keys.T & 7)  # [W-1, V]
    bad = np.zeros(v, dtype=bool)
    overflow = np.zeros(v, dtype=bool)
    num_f, den_f, end_f = num.ravel(), den.ravel(), end.ravel()
    for step in range(width - 1):
        active = step < n_ops
        at = order[step] * v + r  # slot j of operator j (left operand's right end)
        an, bn = num_f[at], num_f[at + v]
        ad, bd = den_f[at], den_f[at + v]
        op = opcode.ravel()[at]
        # Every product below pairs a part of `a` with a part of `b`; a float64 estimate of the
        # largest must stay under 2**62 so that sums of two products fit int64 exactly.
        a_max = np.maximum(np.abs(an), ad).astype(np.float64)
        b_max = np.maximum(np.abs(bn), bd).astype(np.float64)
        risky = active & (a_max * b_max >= _PRODUCT_LIMIT)
        overflow |= risky
        is_div = op == DIV
        c = np.where(is_div, bd, bn)  # a * b = (an*bn) / (ad*bd);  a / b = (an*bd) / (ad*bn)
        e = np.where(is_div, bn, bd)
        new_num = np.where(_IS_MUL_OR_DIV[op], an * c, an * bd + _ADD_SIGN[op] * (bn * ad))
        new_den = ad * e
        zero_div = active & is_div & (bn == 0)
        bad |= zero_div
        new_den[risky | zero_div | ~active] = 1  # values never read; keep the arithmetic sane
        # Reduce only the (rare) non-integers: np.gcd costs ~50x a multiply.
        frac = np.flatnonzero(new_den != 1)
        if len(frac):
            g = np.gcd(new_num[frac], new_den[frac]) * np.sign(new_den[frac])  # den > 0 after
            new_num[frac] //= g
            new_den[frac] //= g
        # The merged segment runs from the left operand's left end to the right one's right end.
        left = np.where(active, end_f[at], width)
        right = np.where(active, end_f[at + v], width)
        for slot, other in ((left * v + r, right), (right * v + r, left)):
            num_f[slot] = new_num
            den_f[slot] = new_den
            end_f[slot] = other
    return num[0], den[0], bad, overflow


# ---------------------------------------------------------------------------------------------
# The reference evaluator: plain Python, exact (``fractions.Fraction``), linear time, iterative
# (no recursion), nothing executed. It is the one statement of the rules above: the reward's exact
# path, the data generator's check (``r1lab.tasks.countdown.is_solution``) and the evaluation's
# answer keys and distances (``r1lab.tasks.countdown.CountdownAnalysis``) all use it, and the
# vectorized path is cross-checked against it (tests/rewards/test_countdown.py).

_SIGNS = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_SLOW_TOKEN = re.compile(r"[0-9]+|[^ \t\n\r\f\v]")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def parse_expression(span: str) -> tuple[Fraction, list[int]]:
    """The exact value of a Countdown answer and its literals in order, whatever the numbers.

    Same syntax as :func:`countdown_reward` (``×``, ``÷``, ``−`` included; a trailing ``= N`` must
    state the value). Raises ``ValueError`` on a syntax error, a literal longer than
    ``MAX_SLOW_DIGITS`` digits, a division by zero or a false ``= N``.

    >>> parse_expression("(6 - 2) × 25 = 100")
    (Fraction(100, 1), [6, 2, 25])
    """
    rpn, literals, rhs = _compile(span)
    value = _run(rpn)
    if rhs is not None and rhs != value:
        raise ValueError(f"the answer {span[:200]!r} claims a value it does not have (= {rhs})")
    return value, literals


def evaluate_answer(span: str, numbers: Sequence[int]) -> Fraction | None:
    """The exact value of an answer that keeps every rule but the target's, else ``None``.

    The rules: the reward's syntax, each of ``numbers`` used exactly once, no division by zero,
    and a trailing ``= N`` only when ``N`` is the value. So an answer scores 1 exactly when this
    equals the target. Cost is bounded by the span length and ``len(numbers) * MAX_SLOW_DIGITS``:
    more literals than numbers stop the parse, and nothing is evaluated unless they match.
    """
    try:
        rpn, literals, rhs = _compile(span, max_literals=len(numbers))
    except ValueError:
        return None
    if sorted(literals) != sorted(int(x) for x in numbers):
        return None
    try:
        value = _run(rpn)
    except ValueError:
        return None
    return value if rhs is None or rhs == value else None


def score_expression_exact(span: str, numbers: Sequence[int], target: int) -> bool:
    """Exact, unvectorized scorer of one answer span (the rules of :func:`countdown_reward`).

    Used for the rare rows outside the int64 fast path; ``evaluate_answer(...) == target``.
    """
    value = evaluate_answer(span, numbers)
    return value is not None and value == target


def _compile(span: str, max_literals: int | None = None) -> tuple[list, list[int], int | None]:
    """Check the syntax of ``span``; return its postfix form (ints and operators), its literals
    and the ``N`` of a trailing ``= N`` (``None`` without one). ``ValueError`` if it breaks a rule,
    or holds more than ``max_literals`` literals."""
    tokens = _SLOW_TOKEN.findall(span.translate(_SIGNS))
    rhs = None
    if "=" in tokens:
        if tokens.count("=") != 1 or len(tokens) < 2 or tokens[-2] != "=":
            raise ValueError(f"'=' is allowed only as a trailing '= N' in {span[:200]!r}")
        rhs = _literal(tokens[-1])
        if rhs is None:
            raise ValueError(f"'= {tokens[-1][:20]}' is not '= N' with a plain literal N in {span[:200]!r}")
        tokens = tokens[:-2]
    rpn: list = []  # shunting-yard output: ints and operator strings
    stack: list[str] = []
    literals: list[int] = []
    expect_operand = True
    depth = 0
    for tok in tokens:
        if tok[0].isdigit() and tok.isascii():
            value = _literal(tok)
            if not expect_operand or value is None:
                raise ValueError(f"unexpected literal {tok[:20]!r} in {span[:200]!r}")
            if max_literals is not None and len(literals) == max_literals:
                raise ValueError(f"more than {max_literals} literals in {span[:200]!r}")
            literals.append(value)
            rpn.append(value)
            expect_operand = False
        elif tok == "(":
            if not expect_operand:
                raise ValueError(f"unexpected '(' in {span[:200]!r}")
            stack.append(tok)
            depth += 1
        elif tok == ")":
            if expect_operand or depth == 0:
                raise ValueError(f"unexpected ')' in {span[:200]!r}")
            depth -= 1
            while stack[-1] != "(":
                rpn.append(stack.pop())
            stack.pop()
        elif tok in _PREC:
            if expect_operand:
                raise ValueError(f"unexpected {tok!r} in {span[:200]!r}")
            while stack and stack[-1] != "(" and _PREC[stack[-1]] >= _PREC[tok]:
                rpn.append(stack.pop())
            stack.append(tok)
            expect_operand = True
        else:
            raise ValueError(f"unexpected character {tok!r} in {span[:200]!r}")
    if expect_operand or depth:
        raise ValueError(f"the expression {span[:200]!r} ends early or leaves a '(' open")
    rpn.extend(reversed(stack))
    return rpn, literals, rhs


def _run(rpn: list) -> Fraction:
    """Value of a postfix expression from :func:`_compile`; ``ValueError`` on division by zero."""
    values: list[Fraction] = []
    for item in rpn:
        if isinstance(item, int):
            values.append(Fraction(item))
            continue
        b, a = values.pop(), values.pop()
        if item == "+":
            values.append(a + b)
        elif item == "-":
            values.append(a - b)
        elif item == "*":
            values.append(a * b)
        elif b == 0:
            raise ValueError("division by zero")
        else:
            values.append(a / b)
    return values[0]


def _literal(tok: str) -> int | None:
    """Value of an ASCII decimal literal, or None (not digits, leading zero, too long)."""
    if not (tok.isascii() and tok.isdigit()) or (len(tok) > 1 and tok[0] == "0") or len(tok) > MAX_SLOW_DIGITS:
        return None
    return int(tok)
