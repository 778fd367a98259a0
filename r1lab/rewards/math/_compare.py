"""Decide whether two parsed answers are equal, without sympy where that is possible.

``compare(a, b, expr_cmp)`` walks the answer structures (sets unordered, tuples and intervals
ordered) and asks ``expr_cmp`` about each pair of expressions. Its result is ``True``, ``False``
or ``None`` (undecided: the symbolic fallback must look).

The fast ``expr_cmp`` here, ``fast_expr_equal``, evaluates both expressions exactly with
``fractions.Fraction``: constants compare exactly, and expressions in variables compare at a few
fixed rational points (two different rational functions agree at all of them only by accident).
When a value is irrational (``\\sqrt2``, ``\\pi``) it evaluates in floating point instead: a clear
difference proves inequality, agreement is only a hint and leaves the pair to the fallback.
Sizes are bounded before any power is computed, so ``9^{9^{9^9}}`` is refused, never evaluated.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

ExprCmp = Callable[[tuple, tuple], "bool | None"]

MAX_EXPONENT = 10_000  # |n| in a^n
MAX_BITS = 100_000  # size of a power's result, estimated before computing it
MAX_FACTORIAL = 1_000


class NotRational(Exception):
    """The exact value is irrational or unknown (``\\pi``, ``\\sqrt2``, a variable without a value)."""


class Undefined(Exception):
    """Division by zero and similar, at this point."""


class TooBig(Exception):
    """Computing this would take too long; the answer scores 0."""


def _iroot(n: int, k: int) -> int | None:
    """Exact integer ``k``-th root of ``n >= 0``, or ``None``."""
    if n < 2:
        return n
    r = round(n ** (1.0 / k)) if n.bit_length() < 1000 else None
    if r is None:
        return None
    for cand in (r - 1, r, r + 1):
        if cand >= 0 and cand**k == n:
            return cand
    return None


def _root(x: Fraction, k: int) -> Fraction:
    if k < 1 or k > 64:
        raise NotRational
    if x < 0:
        if k % 2 == 0:
            raise Undefined
        return -_root(-x, k)
    num, den = _iroot(x.numerator, k), _iroot(x.denominator, k)
    if num is None or den is None:
        raise NotRational
    return Fraction(num, den)


def _power(base: Fraction, exp: Fraction) -> Fraction:
    if abs(exp) > MAX_EXPONENT:
        raise TooBig
    if exp.denominator != 1:
        return _power(_root(base, exp.denominator), Fraction(exp.numerator))
    bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if bits * abs(exp) > MAX_BITS:
        raise TooBig
    if base == 0 and exp < 0:
        raise Undefined
    return base ** int(exp)


def exact(node: tuple, env: dict[str, Fraction]) -> Fraction:
    """Exact rational value of ``node`` with variables from ``env``."""
    tag = node[0]
    if tag == "n":
        return node[1]
    if tag == "+":
        return exact(node[1], env) + exact(node[2], env)
    if tag == "*":
        return exact(node[1], env) * exact(node[2], env)
    if tag == "neg":
        return -exact(node[1], env)
    if tag == "/":
        num, den = exact(node[1], env), exact(node[2], env)
        if den == 0:
            raise Undefined
        return num / den
    if tag == "^":
        # The exponent first: a tower is refused before its base is even looked at.
        exp = exact(node[2], env)
        return _power(exact(node[1], env), exp)
    if tag == "v":
        if node[1] in env:
            return env[node[1]]
        raise NotRational
    if tag == "sqrt":
        index = exact(node[2], env)
        if index.denominator != 1:
            raise NotRational
        return _root(exact(node[1], env), int(index))
    if tag == "abs":
        return abs(exact(node[1], env))
    if tag == "!":
        n = exact(node[1], env)
        if n.denominator != 1 or n < 0:
            raise NotRational
        if n > MAX_FACTORIAL:
            raise TooBig
        return Fraction(math.factorial(int(n)))
    if tag == "binom":
        n, k = exact(node[1], env), exact(node[2], env)
        if n.denominator != 1 or k.denominator != 1 or n < 0:
            raise NotRational
        if n > 10 * MAX_FACTORIAL:
            raise TooBig
        return Fraction(math.comb(int(n), int(k)) if k >= 0 else 0)
    raise NotRational  # pi, inf


def approx(node: tuple, env: dict[str, float]) -> float:
    """Floating-point value of ``node``; raises ``Undefined`` where it is not a finite real."""
    tag = node[0]
    try:
        if tag == "n":
            return float(node[1])
        if tag == "+":
            return approx(node[1], env) + approx(node[2], env)
        if tag == "*":
            return approx(node[1], env) * approx(node[2], env)
        if tag == "neg":
            return -approx(node[1], env)
        if tag == "/":
            return approx(node[1], env) / approx(node[2], env)
        if tag == "^":
            exp = approx(node[2], env)
            if abs(exp) > MAX_EXPONENT:
                raise TooBig
            value = approx(node[1], env) ** exp
        elif tag == "v":
            value = env[node[1]]
        elif tag == "pi":
            value = math.pi
        elif tag == "inf":
            value = math.inf
        elif tag == "sqrt":
            index = approx(node[2], env)
            base = approx(node[1], env)
            value = base ** (1.0 / index) if base >= 0 else -((-base) ** (1.0 / index))
            if base < 0 and int(index) % 2 == 0:
                raise Undefined
        elif tag == "abs":
            value = abs(approx(node[1], env))
        elif tag == "!":
            value = float(exact(node, {}))
        elif tag == "binom":
            value = float(exact(node, {}))
        else:
            raise Undefined
    except (ZeroDivisionError, OverflowError, ValueError, KeyError, NotRational):
        raise Undefined from None
    if isinstance(value, complex):
        raise Undefined
    return value


def variables(node: tuple, out: set[str] | None = None) -> set[str]:
    out = set() if out is None else out
    if node[0] == "v":
        out.add(node[1])
    elif node[0] not in ("n", "pi", "inf"):
        for child in node[1:]:
            variables(child, out)
    return out


# Fixed evaluation points (positive, so roots and fractional powers stay real). Distinct primes
# make an accidental agreement of two different rational functions astronomically unlikely.
_POINTS = ((7, 3), (11, 4), (13, 5), (17, 9))


def _envs(names: set[str]) -> list[dict[str, Fraction]]:
    ordered = sorted(names)
    return [
        {name: Fraction(p + 6 * j, q) for j, name in enumerate(ordered)} for p, q in _POINTS
    ]


def fast_expr_equal(a: tuple, b: tuple) -> bool | None:
    """Equality of two expression ASTs: ``True``/``False`` when proven, ``None`` if irrational."""
    if a == b:
        return True
    names = variables(a) | variables(b)
    envs = _envs(names) if names else [{}]
    try:
        decided = 0
        for env in envs:
            try:
                va, vb = exact(a, env), exact(b, env)
            except Undefined:
                continue
            if va != vb:
                return False
            decided += 1
        if decided >= (2 if names else 1):
            return True
        return None
    except NotRational:
        pass
    except TooBig:
        return False  # cannot be decided quickly: scores 0
    for env in envs:
        fenv = {k: float(v) for k, v in env.items()}
        try:
            fa, fb = approx(a, fenv), approx(b, fenv)
        except Undefined:
            continue
        except TooBig:
            return False
        if math.isinf(fa) or math.isinf(fb):
            if fa != fb:
                return False
            continue
        if not math.isclose(fa, fb, rel_tol=1e-8, abs_tol=1e-9):
            return False
    return None


def _all(results: list[bool | None]) -> bool | None:
    if False in results:
        return False
    if None in results:
        return None
    return True


def _matching(table: list[list[bool | None]], allowed: tuple) -> bool:
    """Whether a perfect matching exists using only cells whose value is in ``allowed``."""
    n = len(table)
    match_of: list[int] = [-1] * n

    def augment(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if not seen[j] and table[i][j] in allowed:
                seen[j] = True
                if match_of[j] < 0 or augment(match_of[j], seen):
                    match_of[j] = i
                    return True
        return False

    return all(augment(i, [False] * n) for i in range(n))


def _unordered(xs: tuple, ys: tuple, expr_cmp: ExprCmp, raw_cmp: ExprCmp) -> bool | None:
    if len(xs) != len(ys):
        return False
    if len(xs) > 64:
        return False  # quadratic matching on huge lists: not an answer a person wrote
    table = [[compare(x, y, expr_cmp, raw_cmp) for y in ys] for x in xs]
    if _matching(table, (True,)):
        return True
    if _matching(table, (True, None)):
        return None
    return False


def _source(answer: tuple) -> str | None:
    return answer[2] if answer[0] == "expr" else answer[1] if answer[0] == "raw" else None


def compare(a: tuple, b: tuple, expr_cmp: ExprCmp, raw_cmp: ExprCmp) -> bool | None:
    """Equality of two parsed answers (model ``a``, gold ``b``); ``None`` means undecided.

    ``raw_cmp`` receives the source strings of pairs where one side is ``raw`` (unparsed).
    """
    if a[0] == "reject" or b[0] == "reject":
        return False
    # A set of one element is that element: ``\{5\}`` and ``5`` are the same answer.
    if a[0] == "seq" and a[1] in ("set", "union") and len(a[2]) == 1:
        a = a[2][0]
    if b[0] == "seq" and b[1] in ("set", "union") and len(b[2]) == 1:
        b = b[2][0]
    if a[0] == "raw" or b[0] == "raw":
        sa, sb = _source(a), _source(b)
        if sa is None or sb is None:
            return False
        return raw_cmp(sa, sb)
    if a[0] != b[0]:
        return False
    if a[0] == "text":
        return a[1] == b[1]
    if a[0] == "expr":
        return expr_cmp(a[1], b[1])
    if a[1] != b[1]:
        return False  # bracket types matter: (1, 2] is not [1, 2]
    if a[1] in ("set", "union"):
        return _unordered(a[2], b[2], expr_cmp, raw_cmp)
    if len(a[2]) != len(b[2]):
        return False
    return _all([compare(x, y, expr_cmp, raw_cmp) for x, y in zip(a[2], b[2])])


def undecided(_a: str, _b: str) -> None:
    """``raw_cmp`` of the fast path: anything unparsed goes to the symbolic fallback."""
    return None
