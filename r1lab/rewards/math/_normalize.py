"""Normalise a short LaTeX answer string into the canonical text the parser reads.

This only rewrites strings (no parsing, no evaluation): it drops what a grader ignores (math
delimiters, ``\\left``/``\\right``, spacing commands, ``\\$``, ``\\%``, degrees, units,
thousands separators, a trailing period) and maps synonyms onto one spelling (``\\dfrac`` ->
``\\frac``, ``\\cdot`` -> ``*``, "or"/"and" -> ``,``). Two answers with the same normal form are
equal without any further work, which is what most correct answers hit.
"""
from __future__ import annotations

import re

# TeX primitives that define or expand macros: nothing a model writes with them can be graded
# without running TeX, so answers containing them score 0.
_FORBIDDEN = re.compile(
    r"\\(?:def|edef|gdef|xdef|let|futurelet|newcommand|renewcommand|providecommand|"
    r"DeclareMathOperator|csname|expandafter|catcode|input|include|write|read|openin|openout|"
    r"loop|repeat|afterassignment|begingroup|endgroup)(?![a-zA-Z])"
)

_UNICODE = str.maketrans(
    {
        "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u00b7": "*", "\u22c5": "*",
        "\u00f7": "/", "\u00b0": "", "\u2009": " ", "\u202f": " ", "\u00a0": " ", "\u2002": " ",
        "\u221e": "\\infty ", "\u03c0": "\\pi ", "\u221a": "\\sqrt", "\u2264": "<=", "\u2265": ">=",
    }
)

_SIZING = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|bigg|Bigg|big|Big)(?![a-zA-Z])\.?"
    r"|\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])"
)
_SPACING = re.compile(r"\\[,:;> ]|\\(?:q?quad|enspace|thinspace|medspace|thickspace)(?![a-zA-Z])|~")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\(?:circ|degree)(?![a-zA-Z])")

# (pattern, replacement) pairs applied with str.replace, cheapest first.
_REPLACE = (
    ("\\$", ""), ("$", ""), ("\\%", ""), ("%", ""), ("\\!", ""),
    ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"),
    ("\\dbinom", "\\binom"), ("\\tbinom", "\\binom"),
    ("{,}", ","), ("\\lbrace", "\\{"), ("\\rbrace", "\\}"), ("\\lbrack", "["), ("\\rbrack", "]"),
    ("\\lvert", "|"), ("\\rvert", "|"), ("\\vert", "|"), ("\\langle", "("), ("\\rangle", ")"),
    ("\\cdot", "*"), ("\\times", "*"), ("\\ast", "*"), ("\\div", "/"),
    ("\\leq", "<="), ("\\geq", ">="), ("\\neq", "!="), ("\\varnothing", "\\emptyset"),
)

# Units a grader ignores after a number. Inside ``\text{}`` any word after a number is a unit;
# bare words are only dropped when listed here, so a trailing variable is never eaten.
_UNITS = (
    "square units", "sq units", "units", "unit", "square feet", "square meters", "square inches",
    "cubic feet", "cubic meters", "dollars", "dollar", "cents", "cent", "percent", "degrees",
    "degree", "meters", "meter", "metres", "cm", "mm", "km", "m", "inches", "inch", "feet",
    "foot", "ft", "yards", "yard", "miles", "mile", "mph", "kg", "grams", "gram", "g", "pounds",
    "pound", "lbs", "lb", "ounces", "oz", "liters", "liter", "litres", "ml", "hours", "hour",
    "hrs", "hr", "minutes", "minute", "mins", "min", "seconds", "second", "sec", "days", "day",
    "weeks", "week", "months", "month", "years", "year", "people", "students", "apples",
)
_UNIT_SET = frozenset(_UNITS)
# Bare single letters ("m", "g") are variables as often as units, so only longer words are dropped.
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in _UNITS if len(u) > 1), key=len, reverse=True))
_POWER_23 = r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?"
_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|textup|mathrm|mathbf|mathit|mathsf|mathtt|mbox|hbox)"
    r"\s*\{([^{}]*)\}" + _POWER_23
)
_BARE_UNIT = re.compile(r"(?<=[\d}])\s+(?:" + _UNIT_ALT + r")" + _POWER_23 + r"\s*$")
_WORD_SEP = re.compile(r",?\s+(?:or|and)\s+")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")
# A space matters only between a letter and a letter/digit ("no solution", "\pi r").
_DROP_SPACE = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z0-9])")


def _text_sub(match: re.Match) -> str:
    content = match.group(1).strip()
    if content.lower() in _UNIT_SET:
        return " "
    # Any trailing word after a number is a unit ("5\text{ apples}").
    if match.end() == len(match.string) and content.replace(" ", "").isalpha():
        before = match.string[: match.start()].rstrip()
        if before and (before[-1].isdigit() or before[-1] == "}"):
            return " "
    return " " + content + " "


def normalize(answer: str) -> str | None:
    """Canonical form of ``answer`` (model or gold), or ``None`` when it must score 0 (``\\def``...)."""
    if "\\" in answer and _FORBIDDEN.search(answer):
        return None
    s = answer.translate(_UNICODE).strip()
    # Protect matrix row breaks ``\\`` from the spacing rules (``\ `` is a space command).
    s = s.replace("\\\\", "\x00")
    for old, new in _REPLACE:
        if old in s:
            s = s.replace(old, new)
    if "\\" in s:
        s = _SIZING.sub("", s)
        s = _SPACING.sub(" ", s)
        s = _DEGREES.sub("", s)
        if "{" in s:
            s = _TEXT_CMD.sub(_text_sub, s)
    elif "~" in s:
        s = s.replace("~", " ")
    if " " in s:
        s = s.strip()
        s = _BARE_UNIT.sub("", s)
        s = _WORD_SEP.sub(",", s)
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "").replace(" ", "")
    if " " in s or "\n" in s or "\t" in s:
        s = _DROP_SPACE.sub("", _SPACES.sub(" ", s))
    return s.replace("\x00", "\\\\")
