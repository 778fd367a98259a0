"""Countdown verifier: is the answer an arithmetic expression that uses each given number once
and equals the target? Vectorized over the whole batch.

Rules (a completion scores 1.0 only if all hold, else 0.0):

* The answer is the last complete ``<answer>...</answer>`` after the last ``</think>``
  (see :mod:`r1lab.rewards._spans`). None, empty or unclosed -> 0.
* It is an expression of non-negative integer literals, binary ``+ - * /``, parentheses and
  ASCII whitespace. ``×``, ``÷``, ``−`` (U+2212) count as ``*``, ``/``, ``-``. An optional
  trailing ``= N`` is allowed only when ``N`` is the target. Anything else -> 0: letters,
  ``**``, ``^``, ``.``, ``%``, unary ``-``/``+``, implicit multiplication (``2(3)``,
  ``(2)(3)``), empty parentheses, literals with a leading zero (``07``; Python rejects them too).
* The multiset of literals equals the multiset of given numbers (each used exactly once, so
  ``25`` is not ``2`` and ``5``).
* It evaluates **exactly** (rational arithmetic) to the target; division by zero -> 0.

How. Per completion, Python does only three ``rfind`` calls and one slice (``answer_spans``).
The short spans are joined into one byte array and everything else runs on numpy arrays:

1. *Lex* (per byte): a 256-entry class table; a token starts at every non-space byte that does
   not continue a digit run.
2. *Check syntax* (per token): a table of allowed (previous, current) token pairs, which rejects
   every forbidden construct above; a segmented cumulative sum of parentheses for balance.
3. *Flatten*: with syntax valid, dropping the parentheses leaves ``v0 op v1 op ... v(n-1)``;
   each operator gets the priority ``2 * paren_depth + (1 if * or /)``. The parse tree is then
   fixed by the priorities, and applying the leftmost highest-priority operator first is a
   valid evaluation order (its two neighbours are leaves). So ``n - 1`` vectorized reduction
   steps evaluate every row at once, whatever the parenthesis depth: 1,000 nested parentheses
   cost one cumulative sum, not 1,000 steps (Python's parser refuses that depth).
4. *Evaluate* on int64 numerator/denominator arrays, gcd-reduced after each step. Before each
   step a float64 estimate of every product checks it stays below 2**62, so int64 never wraps;
   rows past that bound (and rows with literals or numbers beyond int64) go to an exact slow
   path (``fractions.Fraction``, literals capped at ``MAX_SLOW_DIGITS`` digits). A wrong 1 is
   impossible and nothing is ever executed.

Cost is linear in the total length of the answer spans, so every call has bounded wall time.
"""
from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch

from r1lab.rewards._spans import answer_spans
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
_CAN_END = np.zeros(_NTYPES, dtype=bool)
_CAN_END[[NUM, RP]] = True

_MAX_FAST_DIGITS = 18  # 10**18 - 1 < 2**63
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
    """``[N]`` bool: is each answer span a correct Countdown expression?"""
    n = len(spans)
    lens = np.fromiter(map(len, spans), dtype=np.int64, count=n)  # [N] chars == bytes below
    buf = _span_bytes("".join(spans))  # [B] uint8
    target, target_ok = _to_int64(targets)  # [N]
    given_len, given_flat, given_ok = _flatten_numbers(numbers, n)

    # 1. Lex. A token starts at every non-space byte that does not continue a digit run.
    cls = _CLASS[buf]  # [B]
    is_digit = cls == NUM
    row_start = np.cumsum(lens) - lens  # [N]
    first_byte = row_start[lens > 0]
    cont = np.zeros(len(buf), dtype=bool)  # digit preceded by a digit of the same span
    cont[1:] = is_digit[1:] & is_digit[:-1]
    cont[first_byte] = False
    tok_pos = np.flatnonzero((cls != WS) & ~cont)  # [T] byte offset of each token
    ttype = cls[tok_pos]  # [T]
    trow = np.repeat(np.arange(n, dtype=np.int64), lens)[tok_pos]  # [T] row of each token
    n_tok = len(tok_pos)

    # Literal values: digit runs end where the next byte is not a continuing digit.
    is_num = ttype == NUM
    num_start = tok_pos[is_num]  # [M]
    next_cont = np.zeros(len(buf), dtype=bool)
    next_cont[:-1] = cont[1:]
    num_len = np.flatnonzero(is_digit & ~next_cont) - num_start + 1  # [M]
    num_val = _parse_literals(buf, num_start, num_len)  # [M] int64 (garbage where too long)

    # 2. Syntax, per token: allowed pairs, proper ends, '=' only as "... = N" at the very end,
    # parentheses never closing below depth 0 and balanced at the end.
    first = np.ones(n_tok, dtype=bool)
    first[1:] = trow[1:] != trow[:-1]
    last = np.ones(n_tok, dtype=bool)
    last[:-1] = first[1:]
    prev = np.empty(n_tok, dtype=np.uint8)
    prev[1:] = ttype[:-1]
    prev[first] = START
    ok = _ALLOWED[prev, ttype] & (~last | _CAN_END[ttype])
    eq_idx = np.flatnonzero(ttype == EQ)
    last_pad = np.append(last, True)
    ok[eq_idx] &= last_pad[eq_idx + 1]  # the token after '=' ends the answer
    delta = (ttype == LP).astype(np.int64) - (ttype == RP)
    depth = np.cumsum(delta)  # [T]
    depth -= np.repeat((depth - delta)[first], np.diff(np.append(np.flatnonzero(first), n_tok)))
    ok &= depth >= 0
    ok &= ~last | (depth == 0)
    leading_zero = np.zeros(n_tok, dtype=bool)
    leading_zero[is_num] = (num_len > 1) & (buf[num_start] == ord("0"))
    ok &= ~leading_zero

    syntax_ok = np.zeros(n, dtype=bool)
    syntax_ok[trow[first]] = True  # rows with at least one token
    syntax_ok[trow[~ok]] = False

    # Right-hand side of '= N': must equal the target; not a used literal.
    is_rhs = np.zeros(n_tok, dtype=bool)
    is_rhs[eq_idx[~last[eq_idx]] + 1] = True  # a row-final '=' is already a syntax error
    is_rhs &= is_num
    is_lit = is_num & ~is_rhs
    rhs_in_num = is_rhs[is_num]
    rhs_ok = np.ones(n, dtype=bool)
    rhs_rows = trow[is_rhs]
    rhs_ok[rhs_rows] = num_val[rhs_in_num] == target[rhs_rows]

    n_lit = np.bincount(trow[is_lit], minlength=n)  # [N]
    count_ok = n_lit == given_len
    big_literal = np.zeros(n, dtype=bool)
    big_literal[trow[is_num][num_len > _MAX_FAST_DIGITS]] = True
    # Rows whose values do not fit the fast path's int64 go to the exact path, syntax permitting.
    slow = syntax_ok & count_ok & (big_literal | ~given_ok | ~target_ok)
    fast = syntax_ok & count_ok & rhs_ok & ~slow

    # 3. Flatten the fast rows to v0 op v1 ... with operator priorities.
    result = np.zeros(n, dtype=bool)
    keep = fast[trow] & (is_lit | ((ttype >= ADD) & (ttype <= DIV)))
    kidx = np.flatnonzero(keep)  # [K] alternating literal, op, literal, ...
    if len(kidx):
        krow = trow[kidx]
        kfirst = np.ones(len(kidx), dtype=bool)
        kfirst[1:] = krow[1:] != krow[:-1]
        kstart = np.flatnonzero(kfirst)
        rows = krow[kstart]  # [V] fast rows, in order
        vrow = np.cumsum(kfirst) - 1  # [K] index into rows
        pos = np.arange(len(kidx)) - np.repeat(kstart, np.diff(np.append(kstart, len(kidx))))
        width = int(given_len[rows].max())
        lit_val = np.zeros(n_tok, dtype=np.int64)
        lit_val[is_num] = num_val
        ktype = ttype[kidx]
        is_klit = pos % 2 == 0
        values = np.full((len(rows), width), np.iinfo(np.int64).max, dtype=np.int64)  # [V, W]
        values[vrow[is_klit], pos[is_klit] // 2] = lit_val[kidx[is_klit]]
        ops = np.zeros((len(rows), max(width - 1, 0)), dtype=np.uint8)  # [V, W-1]
        prio = np.full((len(rows), max(width - 1, 0)), -1, dtype=np.int64)  # -1 pads
        kop = ~is_klit
        ops[vrow[kop], pos[kop] // 2] = ktype[kop]
        prio[vrow[kop], pos[kop] // 2] = 2 * depth[kidx[kop]] + (ktype[kop] >= MUL)

        given = _given_matrix(given_len, given_flat, rows, width)  # [V, W], same padding
        multiset_ok = (np.sort(values, axis=1) == np.sort(given, axis=1)).all(axis=1)
        num, den, bad, overflow = _evaluate(values, ops, prio)
        correct = multiset_ok & ~bad & ~overflow & (den == 1) & (num == target[rows])
        result[rows] = correct
        slow[rows[multiset_ok & ~bad & overflow]] = True

    # 4. Exact slow path for the rare rows the int64 path cannot decide.
    for i in np.flatnonzero(slow).tolist():
        result[i] = score_expression_exact(spans[i], numbers[i], targets[i])
    return result


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
    over runs). Runs longer than ``_MAX_FAST_DIGITS`` get a meaningless value; callers route them
    to the exact path."""
    val = np.zeros(len(start), dtype=np.int64)
    if len(start) == 0:
        return val
    for j in range(min(int(length.max()), _MAX_FAST_DIGITS)):
        live = length > j
        idx = start[live] + j
        val[live] = val[live] * 10 + (buf[idx].astype(np.int64) - ord("0"))
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
    flat, fits = _to_int64(list(itertools.chain.from_iterable(numbers)))
    row_fits = np.ones(n, dtype=bool)
    bad_rows = np.repeat(np.arange(n), given_len)[~fits]
    row_fits[bad_rows] = False
    return given_len, flat, row_fits


def _given_matrix(given_len: np.ndarray, flat: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """``[V, width]`` given numbers of ``rows``, padded with int64 max like the literal matrix."""
    offsets = np.cumsum(given_len) - given_len
    lens = given_len[rows]
    r = np.repeat(np.arange(len(rows)), lens)
    col = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    out = np.full((len(rows), width), np.iinfo(np.int64).max, dtype=np.int64)
    out[r, col] = flat[np.repeat(offsets[rows], lens) + col]
    return out


def _evaluate(
    values: np.ndarray, ops: np.ndarray, prio: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``v0 op1 v1 ... `` per row by repeatedly applying the leftmost
    highest-priority operator.

    Args:
        values: ``[V, W]`` int64 literals (padding past each row's count is ignored).
        ops: ``[V, W-1]`` operator codes.
        prio: ``[V, W-1]`` operator priorities, -1 for padding.

    Returns:
        ``num``, ``den`` (``[V]`` int64, reduced, ``den > 0``), ``bad`` (``[V]`` division by zero)
        and ``overflow`` (``[V]`` a step would have left the exact int64 range; undecided).
    """
    v = len(values)
    r = np.arange(v)
    num = values.copy()
    den = np.ones_like(values)
    bad = np.zeros(v, dtype=bool)
    overflow = np.zeros(v, dtype=bool)
    for w in range(ops.shape[1], 0, -1):  # w = operator columns left
        k = prio.argmax(axis=1)  # leftmost maximum
        active = prio[r, k] >= 0
        op = ops[r, k]
        an, ad, bn, bd = num[r, k], den[r, k], num[r, k + 1], den[r, k + 1]
        fan, fad, fbn, fbd = np.abs(an).astype(float), ad.astype(float), np.abs(bn).astype(float), bd.astype(float)
        risky = active & (
            (fan * fbd >= _PRODUCT_LIMIT) | (fbn * fad >= _PRODUCT_LIMIT)
            | (fad * fbd >= _PRODUCT_LIMIT) | (fan * fbn >= _PRODUCT_LIMIT)
        )
        overflow |= risky
        is_mul, is_div, is_add = op == MUL, op == DIV, op == ADD
        cross = an * bd
        new_num = np.where(is_mul, an * bn, np.where(is_div, cross, np.where(is_add, cross + bn * ad, cross - bn * ad)))
        new_den = np.where(is_div, ad * bn, ad * bd)
        zero_div = active & is_div & (bn == 0)
        bad |= zero_div
        # Rows leaving the fast path (or dividing by zero) carry 0/1 so nothing below misbehaves.
        dead = risky | zero_div
        new_num[dead] = 0
        new_den[dead] = 1
        sign = np.where(new_den < 0, -1, 1)
        new_num *= sign
        new_den *= sign
        g = np.gcd(new_num, new_den)
        g[g == 0] = 1
        num[r, k] = np.where(active, new_num // g, an)
        den[r, k] = np.where(active, new_den // g, ad)
        # Drop value column k+1 and operator column k.
        jv = np.arange(w)[None, :]
        take_v = jv + (jv > k[:, None])
        num = np.take_along_axis(num, take_v, axis=1)
        den = np.take_along_axis(den, take_v, axis=1)
        jo = np.arange(w - 1)[None, :]
        take_o = jo + (jo >= k[:, None])
        ops = np.take_along_axis(ops, take_o, axis=1)
        prio = np.take_along_axis(prio, take_o, axis=1)
    return num[:, 0], den[:, 0], bad, overflow


# ---------------------------------------------------------------------------------------------
# Exact slow path: plain Python, linear time, iterative (no recursion), nothing executed.

_SIGNS = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_SLOW_TOKEN = re.compile(r"[0-9]+|[^ \t\n\r\f\v]")
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def score_expression_exact(span: str, numbers: Sequence[int], target: int) -> bool:
    """Exact, unvectorized scorer of one answer span (same rules as :func:`countdown_reward`).

    Used for the rare rows outside the int64 fast path. Literals longer than
    ``MAX_SLOW_DIGITS`` digits score 0, so the cost is bounded by the span length and
    ``len(numbers) * MAX_SLOW_DIGITS``.
    """
    tokens = _SLOW_TOKEN.findall(span.translate(_SIGNS))
    if "=" in tokens:
        if tokens.count("=") != 1 or len(tokens) < 2 or tokens[-2] != "=":
            return False
        rhs = _literal(tokens[-1])
        if rhs is None or rhs != target:
            return False
        tokens = tokens[:-2]
    rpn: list = []  # shunting-yard output: ints and operator strings
    stack: list[str] = []
    literals: list[int] = []
    expect_operand = True
    depth = 0
    for tok in tokens:
        if tok[0].isdigit() and tok.isascii():
            value = _literal(tok)
            if not expect_operand or value is None or len(literals) == len(numbers):
                return False
            literals.append(value)
            rpn.append(value)
            expect_operand = False
        elif tok == "(":
            if not expect_operand:
                return False
            stack.append(tok)
            depth += 1
        elif tok == ")":
            if expect_operand or depth == 0:
                return False
            depth -= 1
            while stack[-1] != "(":
                rpn.append(stack.pop())
            stack.pop()
        elif tok in _PREC:
            if expect_operand:
                return False
            while stack and stack[-1] != "(" and _PREC[stack[-1]] >= _PREC[tok]:
                rpn.append(stack.pop())
            stack.append(tok)
            expect_operand = True
        else:
            return False
    if expect_operand or depth:
        return False
    rpn.extend(reversed(stack))
    if sorted(literals) != sorted(int(x) for x in numbers):
        return False
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
            return False
        else:
            values.append(a / b)
    return values[0] == target


def _literal(tok: str) -> int | None:
    """Value of an ASCII decimal literal, or None (not digits, leading zero, too long)."""
    if not (tok.isascii() and tok.isdigit()) or (len(tok) > 1 and tok[0] == "0") or len(tok) > MAX_SLOW_DIGITS:
        return None
    return int(tok)
