"""Symbolic equality for the pairs the fast path leaves undecided. Runs only in fallback workers.

Expressions our parser read are rebuilt as sympy objects node by node (no ``sympify`` of text)
and compared by simplifying their difference; what it could not read (``\\sin``, equations) goes
to math-verify's ``parse``/``verify``. The parent has already refused unsafe strings
(``_fallback.safe_for_symbolic``), and kills this process if it takes too long.
"""
from __future__ import annotations

import logging

import sympy

from r1lab.rewards.math._compare import MAX_FACTORIAL, compare, fast_expr_equal
from r1lab.rewards.math._normalize import normalize
from r1lab.rewards.math._parse import parse_answer

MAX_SYMBOLIC_EXPONENT = 1000

# math-verify warns on every call that its own timeouts are off; the parent's kill is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def to_sympy(node: tuple) -> sympy.Expr:
    """A sympy expression built from our AST; raises ``ValueError`` on sizes we refuse."""
    tag = node[0]
    if tag == "n":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if tag == "v":
        return sympy.Symbol(node[1].lstrip("\\"))
    if tag == "pi":
        return sympy.pi
    if tag == "inf":
        return sympy.oo
    if tag == "+":
        return to_sympy(node[1]) + to_sympy(node[2])
    if tag == "*":
        return to_sympy(node[1]) * to_sympy(node[2])
    if tag == "/":
        return to_sympy(node[1]) / to_sympy(node[2])
    if tag == "neg":
        return -to_sympy(node[1])
    if tag == "^":
        exp = to_sympy(node[2])
        if exp.is_number and abs(exp) > MAX_SYMBOLIC_EXPONENT:
            raise ValueError("exponent too large")
        return sympy.Pow(to_sympy(node[1]), exp)
    if tag == "sqrt":
        return sympy.root(to_sympy(node[1]), to_sympy(node[2]))
    if tag == "abs":
        return sympy.Abs(to_sympy(node[1]))
    if tag == "!":
        arg = to_sympy(node[1])
        if arg.is_number and arg > MAX_FACTORIAL:
            raise ValueError("factorial too large")
        return sympy.factorial(arg)
    if tag == "binom":
        return sympy.binomial(to_sympy(node[1]), to_sympy(node[2]))
    raise ValueError(tag)


def sympy_expr_equal(a: tuple, b: tuple) -> bool:
    fast = fast_expr_equal(a, b)
    if fast is not None:
        return fast
    diff = to_sympy(a) - to_sympy(b)
    if diff == 0:
        return True
    diff = sympy.simplify(diff)
    if diff == 0:
        return True
    if diff.is_number:
        # Nested radicals (sqrt(5+2sqrt6) - sqrt2 - sqrt3) need denesting, not simplify.
        return bool(sympy.nsimplify(sympy.sqrtdenest(diff)) == 0)
    return False


def math_verify_equal(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def symbolic_equal(pred: str, gold: str) -> bool:
    """Whether the model answer ``pred`` equals ``gold`` (both as extracted, not normalised)."""
    pred_norm, gold_norm = normalize(pred), normalize(gold)
    if pred_norm is None or gold_norm is None:
        return False
    verdict = compare(parse_answer(pred_norm), parse_answer(gold_norm), sympy_expr_equal, math_verify_equal)
    return bool(verdict)
