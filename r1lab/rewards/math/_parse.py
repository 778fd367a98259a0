"""Parse a normalised answer into a small structure the comparer understands. Nothing is evaluated.

An answer is one of these tuples:

* ``("expr", node, src)``: an arithmetic expression (AST below) with its source text;
* ``("text", words)``: words, lower-cased ("monday", "no solution", a choice letter "c");
* ``("seq", kind, items)``: several answers. ``kind`` is ``"set"`` (comma lists, ``\\{...\\}``:
  unordered), ``"union"`` (``\\cup``: unordered) or the bracket pair of a tuple/interval
  (``"()"``, ``"[]"``, ``"(]"``, ``"[)"``, ``"mat"``: ordered);
* ``("raw", src)``: valid-looking LaTeX this parser does not read (``\\sin``, equations...);
  only the symbolic fallback can grade it;
* ``("reject",)``: cannot be graded quickly (nesting too deep, a literal too long); scores 0.

Expression nodes: ``("n", Fraction)``, ``("v", name)``, ``("pi",)``, ``("inf",)``,
``("+", a, b)``, ``("*", a, b)``, ``("/", a, b)``, ``("neg", a)``, ``("^", a, b)``,
``("sqrt", a, index)``, ``("abs", a)``, ``("!", a)``, ``("binom", n, k)``.

The parser is a hand-written recursive descent over a whitelist of tokens, so model text is
never handed to ``eval`` or ``sympify``; recursion depth is bounded by ``MAX_DEPTH``.
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_DEPTH = 40  # brackets/braces nested deeper than this: reject
MAX_TOKENS = 300
MAX_DIGITS = 400  # a longer literal is "a 50,000-digit number": reject

_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"  # 1: number
    r"|(\\[a-zA-Z]+|\\[{}|])"  # 2: command or escaped brace
    r"|([A-Za-z])"  # 3: letter
    r"|(<=|>=|!=|[-+*/^_(){}\[\],=<>|!']))"  # 4: operator / bracket
)
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi "
    "rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_TEXT = re.compile(r"\(?[A-Za-z][A-Za-z '().-]*")
_RELATION = re.compile(r"[=<>]|\\in(?![a-zA-Z])")
_TEXT_WORDS = frozenset({"no", "yes"})
_PM = ("\\pm", "\\mp")


class Unsupported(Exception):
    """The parser does not read this input; the symbolic fallback may."""


class Rejected(Exception):
    """The input cannot be graded quickly; it scores 0."""


def _tokenize(s: str) -> list[tuple[str, object]]:
    tokens: list[tuple[str, object]] = []
    pos, n = 0, len(s)
    while pos < n:
        m = _TOKEN.match(s, pos)
        if m is None:
            if s[pos:].strip():
                raise Unsupported(s[pos:])
            break
        pos = m.end()
        num, cmd, letter, op = m.groups()
        if num is not None:
            if len(num) > MAX_DIGITS:
                raise Rejected("literal too long")
            tokens.append(("num", num))
        elif cmd is not None:
            tokens.append(("cmd", cmd))
        elif letter is not None:
            tokens.append(("var", letter))
        else:
            tokens.append(("op", op))
        if len(tokens) > MAX_TOKENS:
            raise Rejected("too many tokens")
    return tokens


class _Parser:
    """Recursive descent with the usual precedence: sum < product < unary sign < power < postfix."""

    def __init__(self, tokens: list[tuple[str, object]]):
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, object] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, object]:
        if self.i >= len(self.toks):
            raise Unsupported("unexpected end")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        if self.take() != ("op", op):
            raise Unsupported(f"expected {op}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Rejected("nested too deep")

    def sum(self) -> tuple:
        node = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            self.i += 1
            rhs = self.unary()
            node = ("+", node, rhs if tok[1] == "+" else ("neg", rhs))
        return node

    def product(self) -> tuple:
        node = self.power()
        while (tok := self.peek()) is not None:
            if tok == ("op", "*"):
                self.i += 1
                node = ("*", node, self.unary())
            elif tok == ("op", "/"):
                self.i += 1
                node = ("/", node, self.unary())
            elif self._starts_primary(tok):
                rhs = self.power()
                # A mixed number: an integer written right before a fraction of integers
                # (``2\frac12`` is 5/2, as a person reads it), otherwise implicit multiplication.
                if _is_int_literal(node) and _is_int_fraction(rhs):
                    node = ("+", node, rhs)
                else:
                    node = ("*", node, rhs)
            else:
                break
        return node

    def unary(self) -> tuple:
        tok = self.peek()
        if tok == ("op", "-"):
            self.i += 1
            self.enter()
            node = self.unary()
            self.depth -= 1
            # ``-2\frac12`` is -(2 + 1/2): the sign binds to the whole mixed number.
            return ("neg", node)
        if tok == ("op", "+"):
            self.i += 1
            return self.unary()
        return self.product()

    def power(self) -> tuple:
        base = self.postfix()
        if self.peek() == ("op", "^"):
            self.i += 1
            exponent = self.exponent()
            return ("^", base, exponent)
        return base

    def exponent(self) -> tuple:
        tok = self.peek()
        if tok == ("op", "-"):
            self.i += 1
            return ("neg", self.exponent())
        if tok == ("op", "{"):
            return self.group("{", "}")
        return self.postfix()

    def postfix(self) -> tuple:
        node = self.primary()
        while self.peek() == ("op", "!"):
            self.i += 1
            node = ("!", node)
        return node

    def group(self, open_: str, close: str) -> tuple:
        self.expect(open_)
        self.enter()
        node = self.sum()
        self.depth -= 1
        self.expect(close)
        return node

    def argument(self) -> tuple:
        """A TeX macro argument: ``{...}`` or one token (``\\frac12`` reads digits one at a time)."""
        tok = self.peek()
        if tok == ("op", "{"):
            return self.group("{", "}")
        if tok is not None and tok[0] == "num":
            digits = str(tok[1])
            if len(digits) > 1 and digits[:2].isdigit():
                self.toks[self.i] = ("num", digits[1:])
                return ("n", Fraction(int(digits[0])))
        return self.primary()

    def _starts_primary(self, tok: tuple[str, object]) -> bool:
        kind, value = tok
        if kind in ("num", "var"):
            return True
        if kind == "op":
            return value in ("(", "{", "[")
        return value in ("\\frac", "\\sqrt", "\\pi", "\\infty", "\\binom") or str(value)[1:] in _GREEK

    def primary(self) -> tuple:
        kind, value = self.take()
        if kind == "num":
            return ("n", Fraction(str(value)))
        if kind == "var":
            name = str(value)
            if self.peek() == ("op", "_"):
                self.i += 1
                name += "_" + _subscript(self)
            return ("v", name)
        if kind == "op":
            if value == "(":
                self.i -= 1
                return self.group("(", ")")
            if value == "[":
                self.i -= 1
                return self.group("[", "]")
            if value == "{":
                self.i -= 1
                return self.group("{", "}")
            if value == "|":
                self.enter()
                node = self.sum()
                self.depth -= 1
                self.expect("|")
                return ("abs", node)
            raise Unsupported(f"unexpected {value}")
        cmd = str(value)
        if cmd == "\\frac":
            num = self.argument()
            den = self.argument()
            return ("/", num, den)
        if cmd == "\\sqrt":
            index: tuple = ("n", Fraction(2))
            if self.peek() == ("op", "["):
                index = self.group("[", "]")
            return ("sqrt", self.argument(), index)
        if cmd == "\\binom":
            return ("binom", self.argument(), self.argument())
        if cmd == "\\pi":
            return ("pi",)
        if cmd == "\\infty":
            return ("inf",)
        if cmd[1:] in _GREEK:
            return ("v", cmd)
        raise Unsupported(cmd)


def _subscript(parser: _Parser) -> str:
    tok = parser.take()
    if tok == ("op", "{"):
        parts = []
        while (tok := parser.take()) != ("op", "}"):
            parts.append(str(tok[1]))
        return "{" + "".join(parts) + "}"
    return str(tok[1])


def _is_int_literal(node: tuple) -> bool:
    return node[0] == "n" and node[1].denominator == 1


def _is_int_fraction(node: tuple) -> bool:
    return node[0] == "/" and _is_int_literal(node[1]) and _is_int_literal(node[2])


def parse_expression(s: str) -> tuple:
    """AST of one expression; raises ``Unsupported`` or ``Rejected``."""
    parser = _Parser(_tokenize(s))
    if not parser.toks:
        raise Unsupported("empty")
    node = parser.sum()
    if parser.i != len(parser.toks):
        raise Unsupported("trailing tokens")
    return node


def _split_top(s: str, sep: str) -> list[str]:
    """Split ``s`` on ``sep`` where no bracket is open (``\\{``/``\\}`` count as brackets too)."""
    if sep not in s:
        return [s]
    parts, depth, start, i, n, width = [], 0, 0, 0, len(s), len(sep)
    while i < n:
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i += width
            start = i
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _one_group(s: str) -> bool:
    """Whether ``s`` is a single bracketed group: its first bracket closes at its last character."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


_ASSIGN = re.compile(r"(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?(?:=|\\in(?![a-zA-Z]))")


def _max_depth(s: str) -> int:
    depth = best = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth -= 1
    return best


def _text(s: str) -> tuple | None:
    """Words as a text answer, or ``None`` if ``s`` reads as math (variables, products)."""
    if not _TEXT.fullmatch(s):
        return None
    bare = s.strip("().' ")
    words = bare.lower().split()
    if len(bare) == 1 or any(len(w) >= 3 for w in words) or bare.lower() in _TEXT_WORDS:
        return ("text", " ".join(words).rstrip("."))
    return None


def _element(s: str) -> tuple:
    if not s:
        raise Unsupported("empty element")
    m = _ASSIGN.match(s)
    if m is not None and m.end() < len(s):
        s = s[m.end():]  # ``x = 5`` and ``x \in [1, 2]`` answer with their right-hand side
    text = _text(s)
    if text is not None:
        return text
    if s in ("\\emptyset", "\\{\\}"):
        return ("seq", "set", ())
    if "\\cup" in s:
        parts = _split_top(s, "\\cup")
        if len(parts) > 1:
            return ("seq", "union", tuple(_element(p) for p in parts))
    if s.startswith("\\begin{") and "matrix}" in s[:16]:
        return _matrix(s)
    if s.startswith("\\{") and s.endswith("\\}"):
        return ("seq", "set", tuple(_element(p) for p in _split_top(s[2:-2], ",")))
    if s[0] in "([" and s[-1] in ")]" and _one_group(s):
        items = _split_top(s[1:-1], ",")
        if len(items) > 1:
            return ("seq", s[0] + s[-1], tuple(_element(p) for p in items))
    if _RELATION.search(s):
        return ("raw", s)  # equations and inequalities: symbolic fallback
    try:
        return ("expr", parse_expression(s), s)
    except Unsupported:
        return ("raw", s)


def _matrix(s: str) -> tuple:
    m = re.fullmatch(r"\\begin\{([pbvBV]?matrix)\}(.*)\\end\{\1\}", s, re.S)
    if m is None:
        return ("raw", s)
    rows = [r for r in m.group(2).split("\\\\") if r.strip()]
    cells = [tuple(_element(c.strip()) for c in r.split("&")) for r in rows]
    if all(len(r) == 1 for r in cells):
        return ("seq", "()", tuple(r[0] for r in cells))  # a column vector reads as a tuple
    return ("seq", "mat", tuple(("seq", "()", r) for r in cells))


def _expand_pm(parts: list[str]) -> list[str]:
    """``1 \\pm \\sqrt2`` is the two answers ``1 + \\sqrt2`` and ``1 - \\sqrt2``."""
    out = []
    for p in parts:
        if sum(p.count(pm) for pm in _PM) == 1:
            pm = "\\pm" if "\\pm" in p else "\\mp"
            out += [p.replace(pm, "+"), p.replace(pm, "-")]
        else:
            out.append(p)
    return out


def parse_answer(s: str) -> tuple:
    """Structure of a normalised answer string (see the module docstring)."""
    if not s:
        return ("reject",)
    if s.count("{") + s.count("(") + s.count("[") > MAX_DEPTH and _max_depth(s) > MAX_DEPTH:
        return ("reject",)
    try:
        parts = _split_top(s, ",")
        if "\\pm" in s or "\\mp" in s:
            parts = _expand_pm(parts)
        if len(parts) > 1:
            return ("seq", "set", tuple(_element(p) for p in parts))
        return _element(parts[0])
    except Rejected:
        return ("reject",)
    except Unsupported:
        return ("raw", s)
    except RecursionError:
        return ("reject",)
