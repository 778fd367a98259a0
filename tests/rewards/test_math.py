"""Graded cases for the math verifier, written the way a careful human grader grades them.

Each case is ``(model answer, gold answer, expected score)``; answer-level cases are wrapped in a
completion that ends with ``\\boxed{answer}``. Extraction cases give the whole completion. The
verifier must agree with every grade.
"""
from __future__ import annotations

import os
import threading

import pytest
import torch

from r1lab.rewards import get_reward
from r1lab.rewards.math._fallback import FallbackPool
from r1lab.rewards.math import answers_equal, math_reward

# --- answer-level cases: (boxed model answer, gold, expected) -------------------------------

INTEGERS = [
    (r"42", r"42", 1),
    (r"42", r"43", 0),
    (r"1234", r"1,234", 1),
    (r"1,234", r"1234", 1),
    (r"1{,}234", r"1234", 1),
    (r"1\,234", r"1234", 1),
    (r"1\,200", r"1200", 1),
    (r"1 234", r"1234", 1),
    (r"12,345,678", r"12345678", 1),
    (r"1,000", r"1000", 1),
    (r"1,000,000", r"10^6", 1),
    (r"10^6", r"1000000", 1),
    (r"1,23", r"123", 0),
    (r"1000", r"1,000.00", 1),
    (r"-5", r"-5", 1),
    (r"-5", r"5", 0),
    (r"+5", r"5", 1),
    (r"−5", r"-5", 1),
    (r"007", r"7", 1),
    (r"0", r"0", 1),
    (r"-0", r"0", 1),
    (r"3", r"3.0", 1),
    (r"3.0", r"3", 1),
    (r"3.00", r"3", 1),
    (r"3.01", r"3", 0),
    (r"2", r"-2", 0),
    (r"100.", r"100", 1),
    (r"100.0", r"100", 1),
    (r"12", r"12.", 1),
    (r"99", r"100", 0),
    (r"1000", r"100", 0),
    (r"2^{100}", r"1267650600228229401496703205376", 1),
    (r"72", r"72", 1),
    (r"18", r"1,8", 0),
]

SCIENTIFIC = [
    (r"1e3", r"1000", 1),
    (r"1.5e3", r"1500", 1),
    (r"1.5E3", r"1500", 1),
    (r"2.5e-3", r"0.0025", 1),
    (r"1.5\times10^3", r"1500", 1),
    (r"1.5 \cdot 10^{3}", r"1500", 1),
    (r"3\times 10^{-2}", r"0.03", 1),
    (r"6.02\times10^{23}", r"6.02e23", 1),
    (r"1.5\times10^{3}", r"150", 0),
    (r"2\times10^5", r"200,000", 1),
    (r"1e-3", r"0.001", 1),
    (r"1e3", r"3", 0),
]

FRACTIONS = [
    (r"0.5", r"\frac{1}{2}", 1),
    (r"\frac12", r"0.5", 1),
    (r"\dfrac{1}{2}", r"1/2", 1),
    (r"\tfrac{3}{4}", r"0.75", 1),
    (r"3/4", r"\frac{3}{4}", 1),
    (r"6/8", r"\frac34", 1),
    (r"\frac{2}{4}", r"\frac{1}{2}", 1),
    (r"\frac 12", r"1/2", 1),
    (r"0.33", r"\frac13", 0),
    (r"0.333", r"1/3", 0),
    (r"\frac{1}{3}", r"0.3333333", 0),
    (r"\frac{22}{7}", r"\pi", 0),
    (r"\frac{-1}{2}", r"-\frac12", 1),
    (r"-\frac{1}{2}", r"-0.5", 1),
    (r"\frac{1}{-2}", r"-0.5", 1),
    (r"\frac{1}{2}", r"-0.5", 0),
    (r".5", r"0.5", 1),
    (r"0.50", r"1/2", 1),
    (r"1.25", r"\frac{5}{4}", 1),
    (r"1\frac14", r"1.25", 1),
    (r"2\frac{1}{2}", r"\frac52", 1),
    (r"2\frac12", r"2.5", 1),
    (r"2\frac12", r"1", 0),
    (r"-2\frac12", r"-\frac52", 1),
    (r"2 \frac{1}{2}", r"5/2", 1),
    (r"\frac{3}{2}", r"1\frac{1}{2}", 1),
    (r"\frac{10}{4}", r"2.5", 1),
    (r"\frac{7}{2}", r"3.5", 1),
    (r"\frac{7}{2}", r"7/3", 0),
    (r"\dfrac{12}{5}", r"2.4", 1),
    (r"\frac{5}{12}", r"\frac{12}{5}", 0),
    (r"\frac{1}{4}", r"25\%", 0),
    (r"\frac{9}{3}", r"3", 1),
    (r"4/6", r"2/3", 1),
    (r"\frac{2}{3}", r"0.67", 0),
]

PERCENTAGES = [
    (r"50\%", r"50", 1),
    (r"50", r"50\%", 1),
    (r"50\%", r"50\%", 1),
    (r"50%", r"50", 1),
    (r"0.5", r"50\%", 0),
    (r"50\%", r"0.5", 0),
    (r"12.5\%", r"12.5", 1),
    (r"12.5", r"12.5\%", 1),
    (r"25\%", r"\frac14", 0),
    (r"100\%", r"100", 1),
    (r"33\frac13\%", r"\frac{100}{3}", 1),
    (r"50 percent", r"50", 1),
    (r"20\%", r"25\%", 0),
    (r"\frac{1}{2}\%", r"0.5", 1),
]

ARITHMETIC = [
    (r"2+3", r"5", 1),
    (r"2+3", r"6", 0),
    (r"10-3", r"7", 1),
    (r"2\cdot 3", r"6", 1),
    (r"2\times3", r"6", 1),
    (r"2*3", r"6", 1),
    (r"12/4", r"3", 1),
    (r"12\div4", r"3", 1),
    (r"2^{10}", r"1024", 1),
    (r"(-2)^2", r"4", 1),
    (r"-2^2", r"-4", 1),
    (r"-2^2", r"4", 0),
    (r"3!", r"6", 1),
    (r"5!", r"120", 1),
    (r"\binom{5}{2}", r"10", 1),
    (r"\dbinom52", r"10", 1),
    (r"|-3|", r"3", 1),
    (r"\left|-3\right|", r"3", 1),
    (r"-(-3)", r"3", 1),
    (r"2(3+4)", r"14", 1),
    (r"(2)(3)", r"6", 1),
    (r"\frac{6}{3}", r"2", 1),
    (r"1+1", r"11", 0),
    (r"3^2+4^2", r"25", 1),
    (r"\frac{1}{2}+\frac{1}{3}", r"\frac56", 1),
    (r"2^{-1}", r"0.5", 1),
    (r"10^{-2}", r"0.01", 1),
]

RADICALS = [
    (r"\sqrt{4}", r"2", 1),
    (r"\sqrt4", r"2", 1),
    (r"\sqrt{8}", r"2\sqrt{2}", 1),
    (r"2\sqrt2", r"\sqrt8", 1),
    (r"2\sqrt{2}", r"2\sqrt{3}", 0),
    (r"\sqrt{2}", r"1.414", 0),
    (r"\sqrt{2}", r"\sqrt{2}", 1),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", 1),
    (r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}", 1),
    (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt3}", 1),
    (r"\sqrt[3]{8}", r"2", 1),
    (r"\sqrt[3]{27}", r"3", 1),
    (r"\sqrt{12}", r"2\sqrt3", 1),
    (r"3\sqrt{2}", r"\sqrt{18}", 1),
    (r"\sqrt{18}", r"\sqrt{19}", 0),
    (r"\sqrt{2}+\sqrt{3}", r"\sqrt{5+2\sqrt{6}}", 1),
    (r"2+\sqrt{3}", r"\sqrt3+2", 1),
    (r"2-\sqrt{3}", r"2+\sqrt3", 0),
    (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}", 1),
    (r"\frac{1+\sqrt5}{2}", r"\frac{\sqrt5+1}{2}", 1),
    (r"\frac{1-\sqrt5}{2}", r"\frac{\sqrt5+1}{2}", 0),
    (r"4^{1/2}", r"2", 1),
    (r"8^{2/3}", r"4", 1),
    (r"27^{\frac13}", r"3", 1),
    (r"\sqrt{50}", r"5\sqrt{2}", 1),
    (r"\sqrt{\frac{1}{4}}", r"\frac12", 1),
    (r"6\sqrt{3}", r"\sqrt{108}", 1),
    (r"4\sqrt{3}", r"\sqrt{108}", 0),
]

PI = [
    (r"\pi", r"\pi", 1),
    (r"2\pi", r"2 \pi", 1),
    (r"2\pi", r"\pi \cdot 2", 1),
    (r"\pi", r"3.14", 0),
    (r"\pi", r"3.14159", 0),
    (r"\frac{\pi}{2}", r"\frac12\pi", 1),
    (r"\frac{\pi}{2}", r"\frac{\pi}{3}", 0),
    (r"\pi r^2", r"r^2\pi", 1),
    (r"\frac{4}{3}\pi", r"\frac{4\pi}{3}", 1),
    (r"36\pi", r"36 \pi", 1),
    (r"36\pi", r"12\pi", 0),
    (r"2\pi - 4", r"-4 + 2\pi", 1),
    (r"\pi^2", r"\pi \cdot \pi", 1),
    (r"π", r"\pi", 1),
    (r"\frac{\pi}{4}", r"0.25\pi", 1),
]

ALGEBRA = [
    (r"x^2+2x+1", r"(x+1)^2", 1),
    (r"(x+1)^2", r"x^2+2x+1", 1),
    (r"x^2+2x+1", r"(x-1)^2", 0),
    (r"2x+3", r"3+2x", 1),
    (r"2(x+1)", r"2x+2", 1),
    (r"\frac{x}{2}", r"0.5x", 1),
    (r"\frac{x^2-1}{x-1}", r"x+1", 1),
    (r"x^2-1", r"(x-1)(x+1)", 1),
    (r"a+b", r"b+a", 1),
    (r"ab", r"ba", 1),
    (r"2a", r"a+a", 1),
    (r"x^2", r"x^3", 0),
    (r"\frac{1}{x}", r"x^{-1}", 1),
    (r"3x-2", r"3x+2", 0),
    (r"n(n+1)/2", r"\frac{n^2+n}{2}", 1),
    (r"\frac{n(n+1)}{2}", r"\frac{n^2+n}{2}", 1),
    (r"x^2 + y^2", r"y^2+x^2", 1),
    (r"2x", r"2y", 0),
    (r"\sqrt{x}", r"x^{1/2}", 1),
    (r"\sqrt{x}+1", r"x^{1/2}", 0),
    (r"x^3-x", r"x(x-1)(x+1)", 1),
    (r"4x^2-4x+1", r"(2x-1)^2", 1),
    (r"\theta+1", r"1+\theta", 1),
    (r"\alpha\beta", r"\beta\alpha", 1),
    (r"x_1+x_2", r"x_2+x_1", 1),
    (r"2^x", r"2^{x}", 1),
    (r"2^x \cdot 2", r"2^{x+1}", 1),
    (r"\frac{2}{x+1}", r"\frac{2}{x-1}", 0),
    (r"\frac{a}{b}", r"a/b", 1),
    (r"(a+b)^2", r"a^2+2ab+b^2", 1),
    (r"(a+b)^2", r"a^2+b^2", 0),
    (r"\frac{1}{2}x^2", r"\frac{x^2}{2}", 1),
    (r"3\sqrt{x}", r"\sqrt{9x}", 1),
    (r"x^{2}y", r"yx^2", 1),
]

ASSIGNMENT = [
    (r"x=5", r"5", 1),
    (r"x = 5", r"5", 1),
    (r"5", r"x=5", 1),
    (r"x=5", r"x=5", 1),
    (r"x=5", r"6", 0),
    (r"y=-3", r"-3", 1),
    (r"n=10", r"10", 1),
    (r"k = \frac{1}{2}", r"0.5", 1),
    (r"x_1=3", r"3", 1),
    (r"\theta = 30^\circ", r"30", 1),
    (r"y=2x+3", r"2x+3", 1),
    (r"2x+3", r"y=2x+3", 1),
    (r"y = 2x + 3", r"y=3+2x", 1),
    (r"y = 2x + 3", r"y=3x+2", 0),
    (r"a = 4", r"4", 1),
    (r"x = -\frac{3}{2}", r"-1.5", 1),
    (r"x \in [1, 2]", r"[1,2]", 1),
]

UNITS = [
    (r"5\text{ cm}", r"5", 1),
    (r"5 \text{cm}", r"5", 1),
    (r"5\,\text{cm}", r"5", 1),
    (r"5\text{ cm}^2", r"5", 1),
    (r"5 \mbox{ cm}", r"5", 1),
    (r"5\mathrm{~cm}", r"5", 1),
    (r"12 \text{ apples}", r"12", 1),
    (r"12\text{ apples}", r"13", 0),
    (r"10 dollars", r"10", 1),
    (r"10 cm", r"10", 1),
    (r"3 hours", r"3", 1),
    (r"60 \text{ mph}", r"60", 1),
    (r"5 \text{ square units}", r"5", 1),
    (r"5\text{ units}^2", r"5", 1),
    (r"45 minutes", r"45", 1),
    (r"18 \text{ inches}", r"18", 1),
    (r"\text{5}", r"5", 1),
    (r"\textbf{5}", r"5", 1),
    (r"\mathbf{7}", r"7", 1),
    (r"5 apples", r"5", 1),
    (r"2.5\text{ km}", r"\frac52", 1),
    (r"9\text{ m}^2", r"9", 1),
    (r"7 \text{ people}", r"8", 0),
    (r"15\text{ meters}", r"15", 1),
]

CURRENCY = [
    (r"\$10", r"10", 1),
    (r"\$10.00", r"10", 1),
    (r"\$1,000", r"1000", 1),
    (r"\$ 1,234.50", r"1234.5", 1),
    (r"10", r"\$10", 1),
    (r"\$10", r"\$11", 0),
    (r"\$0.50", r"0.5", 1),
    (r"\$\frac12", r"0.5", 1),
    (r"\$18", r"18", 1),
    (r"\$18", r"1,8", 0),
    (r"18\$", r"18", 1),
]

DEGREES = [
    (r"90^\circ", r"90", 1),
    (r"90^{\circ}", r"90", 1),
    (r"90°", r"90", 1),
    (r"90", r"90^\circ", 1),
    (r"90 degrees", r"90", 1),
    (r"45^\circ", r"90^\circ", 0),
    (r"360^\circ", r"360", 1),
    (r"60^{\circ}", r"60^\circ", 1),
    (r"30\degree", r"30", 1),
    (r"120^\circ", r"12", 0),
]

INTERVALS_TUPLES = [
    (r"(1,2)", r"(1,2)", 1),
    (r"(1, 2)", r"(1,2)", 1),
    (r"(2,1)", r"(1,2)", 0),
    (r"[1,2]", r"[1,2]", 1),
    (r"[1,2]", r"(1,2)", 0),
    (r"(1,2]", r"(1,2]", 1),
    (r"(1,2]", r"[1,2)", 0),
    (r"[1,2)", r"[1,2)", 1),
    (r"\left(1,2\right)", r"(1,2)", 1),
    (r"\left[ 0, 1 \right)", r"[0,1)", 1),
    (r"(-\infty, 5)", r"(-\infty,5)", 1),
    (r"(-\infty, 5]", r"(-\infty,5)", 0),
    (r"[3,\infty)", r"[3, \infty)", 1),
    (r"(-\infty,0)\cup(1,\infty)", r"(1,\infty)\cup(-\infty,0)", 1),
    (r"(-\infty,0)\cup(1,\infty)", r"(-\infty,0)\cup[1,\infty)", 0),
    (r"(0.5, 2)", r"(\frac12, 2)", 1),
    (r"(1,2,3)", r"(1,2,3)", 1),
    (r"(1,2,3)", r"(1,3,2)", 0),
    (r"(1,2)", r"(1,2,3)", 0),
    (r"(\frac{1}{2}, -3)", r"(0.5,-3)", 1),
    (r"(3,-4)", r"(3,4)", 0),
    (r"(-2, 3)", r"(-2,3)", 1),
    (r"\left( -\frac{3}{2}, 2 \right)", r"(-1.5,2)", 1),
    (r"(2\sqrt2, 1)", r"(\sqrt8, 1)", 1),
    (r"(2\sqrt2, 1)", r"(\sqrt8, 2)", 0),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 1),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}", 0),
    (r"\begin{pmatrix} 1/2 \\ -3 \end{pmatrix}", r"\begin{pmatrix}0.5\\-3\end{pmatrix}", 1),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 1),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix}1&3\\2&4\end{pmatrix}", 0),
    (r"\begin{bmatrix}1\\2\end{bmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 1),
    (r"(1, -1, 2)", r"\begin{pmatrix}1\\-1\\2\end{pmatrix}", 1),
    (r"\Bigl(1, 2\Bigr]", r"(1,2]", 1),
    (r"\big(1,2\big)", r"(1,2)", 1),
    (r"[-2, 2]", r"[-2,2]", 1),
    (r"(-2,2)", r"[-2,2]", 0),
]

SETS = [
    (r"\{1,2\}", r"\{2,1\}", 1),
    (r"\{1,2,3\}", r"\{3,2,1\}", 1),
    (r"\{1,2\}", r"\{1,3\}", 0),
    (r"\{1,2\}", r"\{1,2,3\}", 0),
    (r"1, 2", r"2, 1", 1),
    (r"1,2", r"1, 2", 1),
    (r"2, 3", r"3", 0),
    (r"3", r"2, 3", 0),
    (r"-2, 3", r"3, -2", 1),
    (r"x = -2, x = 3", r"-2, 3", 1),
    (r"x=-2 \text{ or } x=3", r"3, -2", 1),
    (r"-2 \text{ or } 3", r"-2,3", 1),
    (r"-2 or 3", r"3,-2", 1),
    (r"2 and 3", r"2, 3", 1),
    (r"1, 2, and 3", r"1,2,3", 1),
    (r"\pm 2", r"2, -2", 1),
    (r"1\pm\sqrt2", r"1+\sqrt2,1-\sqrt2", 1),
    (r"1 \pm \sqrt{2}", r"1-\sqrt{2}, 1+\sqrt{2}", 1),
    (r"\pm 3", r"3", 0),
    (r"\{5\}", r"5", 1),
    (r"\emptyset", r"\varnothing", 1),
    (r"\emptyset", r"\{\}", 1),
    (r"\emptyset", r"0", 0),
    (r"\frac12, \frac13", r"\frac13, 0.5", 1),
    (r"\{-1, 1\}", r"-1, 1", 1),
    (r"1,2", r"(1,2)", 0),
    (r"\{1,2\}", r"(1,2)", 0),
    (r"1, 2, 3, 4", r"4, 3, 2, 1", 1),
    (r"0, 1", r"0, -1", 0),
    (r"\left\{ 2, 4 \right\}", r"\{4, 2\}", 1),
    (r"\lbrace 2, 4 \rbrace", r"\{2,4\}", 1),
    (r"\sqrt2, -\sqrt2", r"\pm\sqrt{2}", 1),
    (r"(1,2), (3,4)", r"(3,4), (1,2)", 1),
    (r"(1,2), (3,4)", r"(2,1), (3,4)", 0),
]

TEXT = [
    (r"\text{Monday}", r"Monday", 1),
    (r"monday", r"\text{Monday}", 1),
    (r"MONDAY", r"Monday", 1),
    (r"\text{Tuesday}", r"Monday", 0),
    (r"\text{(B)}", r"B", 1),
    (r"(B)", r"B", 1),
    (r"B", r"(B)", 1),
    (r"b", r"B", 1),
    (r"(C)", r"B", 0),
    (r"\text{C}", r"(C)", 1),
    (r"\text{even}", r"\text{Even}", 1),
    (r"\text{odd}", r"\text{even}", 0),
    (r"\text{No solution}", r"no solution", 1),
    (r"\text{yes}", r"Yes", 1),
    (r"\text{no}", r"Yes", 0),
    (r"\text{no}", r"no", 1),
    (r"\textbf{True}", r"true", 1),
    (r"\text{even}", r"2", 0),
    (r"Monday.", r"Monday", 1),
    (r"\text{A}", r"A", 1),
    (r"\mathrm{(D)}", r"D", 1),
    (r"\text{Alice}", r"\text{Bob}", 0),
    (r"\text{ Alice }", r"alice", 1),
    (r"\text{infinitely many}", r"Infinitely many", 1),
]

LAYOUT = [
    (r"\left(\frac{1}{2}\right)", r"\frac12", 1),
    (r"\left( 3 \right)", r"3", 1),
    (r"\!3", r"3", 1),
    (r"3\;", r"3", 1),
    (r"\displaystyle\frac{1}{2}", r"0.5", 1),
    (r"\quad 7", r"7", 1),
    (r"$5$", r"5", 1),
    (r"\(5\)", r"5", 1),
    (r"5~", r"5", 1),
    (r"\, 12 \,", r"12", 1),
    (r"\frac{1}{2}", r"\left(\frac{1}{2}\right)", 1),
    (r"  8  ", r"8", 1),
    (r"\displaystyle \frac{\pi}{2}", r"\frac{\pi}{2}", 1),
]

UNDECIDABLE = [
    (r"9^{9^{9^9}}", r"5", 0),
    (r"2^{2^{2^{2^{2}}}}", r"2", 0),
    (r"10^{10^{10}}", r"1", 0),
    (r"2^{100000}", r"5", 0),
    (r"\def\x{5}\x", r"5", 0),
    (r"\newcommand{\x}{5}\x", r"5", 0),
    (r"\let\a=5 5", r"5", 0),
    (r"\frac{1}{0}", r"1", 0),
    (r"1/0", r"\infty", 0),
    (r"\frac{}{}", r"1", 0),
    (r"(((", r"1", 0),
    (r"1+", r"1", 0),
    (r"\sqrt{}", r"0", 0),
    (r"1" + "0" * 500, r"1", 0),
    (r"{" * 60 + "5" + "}" * 60, r"5", 0),
    (r"1000!", r"1", 0),
]

# Near misses a lenient verifier would let through.
HARD_NEGATIVES = [
    (r"0.5", r"5", 0),
    (r"5", r"0.5", 0),
    (r"1/2", r"2", 0),
    (r"\frac{1}{2}", r"\frac{2}{1}", 0),
    (r"12", r"1.2", 0),
    (r"1200", r"1,200.5", 0),
    (r"1,200", r"120", 0),
    (r"-\frac12", r"\frac12", 0),
    (r"\sqrt{2}", r"2", 0),
    (r"\sqrt{4}", r"4", 0),
    (r"2\pi", r"\pi", 0),
    (r"\pi^2", r"2\pi", 0),
    (r"x+1", r"x-1", 0),
    (r"x^2", r"2x", 0),
    (r"(1,2)", r"\{1,2\}", 0),
    (r"[1,2]", r"\{1,2\}", 0),
    (r"1", r"(1,2)", 0),
    (r"A", r"B", 0),
    (r"50", r"5", 0),
    (r"5\%", r"50\%", 0),
    (r"90^\circ", r"180^\circ", 0),
    (r"10 cm", r"100", 0),
    (r"\$5", r"\$50", 0),
    (r"x=3", r"x=-3", 0),
    (r"2^{10}", r"1000", 0),
    (r"1e3", r"1e4", 0),
    (r"3!", r"3", 0),
    (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{2}}{2}", 0),
    (r"\sqrt{3}/2", r"\frac{3}{2}", 0),
    (r"(0,\infty)", r"[0,\infty)", 0),
    (r"(-\infty,\infty)", r"(0,\infty)", 0),
    (r"\infty", r"-\infty", 0),
    (r"\emptyset", r"\{0\}", 0),
    (r"1, 2", r"1, 2, 3", 0),
    (r"\{1, 2\}", r"\{1\}", 0),
    (r"2x+1", r"2x", 0),
    (r"\frac{x}{2}", r"2x", 0),
    (r"x+y=5", r"x+y=6", 0),
    (r"\cos 0", r"0", 0),
    (r"3+2\sqrt{2}", r"(\sqrt{2}+1)^3", 0),
]

# Forms the fast path leaves to the symbolic fallback (sympy / math-verify in a worker).
SYMBOLIC = [
    (r"\sin(\pi/6)", r"\frac12", 1),
    (r"\log_2 8", r"3", 1),
    (r"\cos(0)", r"1", 1),
    (r"\ln(e)", r"1", 1),
    (r"x+y=5", r"y+x=5", 1),
    (r"\binom{5}{2}", r"\binom{5}{3}", 1),
    (r"10\sqrt{2}", r"\sqrt{200}", 1),
    (r"\frac{3\sqrt{3}}{4}", r"\frac{3}{4}\sqrt3", 1),
    (r"\frac{1}{\sqrt{2}+1}", r"\sqrt2-1", 1),
    (r"(\sqrt{2}+1)^2", r"3+2\sqrt{2}", 1),
    (r"\sqrt{3}^2", r"3", 1),
    (r"0.1+0.2", r"0.3", 1),
]

ANSWER_CASES = (
    HARD_NEGATIVES + SYMBOLIC + INTEGERS + SCIENTIFIC + FRACTIONS + PERCENTAGES + ARITHMETIC + RADICALS + PI + ALGEBRA
    + ASSIGNMENT + UNITS + CURRENCY + DEGREES + INTERVALS_TUPLES + SETS + TEXT + LAYOUT + UNDECIDABLE
)

# --- completion-level cases: (completion, gold, expected) -------------------------------------

_REASONING = "Let me work through this. First, 3 + 4 = 7, and 7 * 2 = 14. So the result is 14. "

COMPLETIONS = [
    (_REASONING + r"Therefore the answer is \boxed{5}.", "5", 1),
    (r"first \boxed{3}, then I corrected it: \boxed{5}", "5", 1),
    (r"first \boxed{5}, then \boxed{3}", "5", 0),
    (r"<think>try \boxed{4}</think> The answer is \boxed{5}.", "5", 1),
    (r"<think>the answer is \boxed{5}</think> I'm not sure.", "5", 0),
    (r"<think> I guess the answer is \boxed{5}", "5", 0),
    (r"</think>\boxed{5}</think> nothing here", "5", 0),
    ("The answer is 5.", "5", 0),
    (r"The answer is 5. \boxed{}", "5", 0),
    (r"\boxed{ }", "5", 0),
    (r"\boxed{5", "5", 0),
    (r"\boxed{5} and then \boxed{6", "5", 0),
    (r"\boxed 5", "5", 1),
    (r"so $\boxed 5$.", "5", 1),
    (r"\boxed 42.", "42", 1),
    (r"\fbox{5}", "5", 1),
    (r"\boxed{\frac{1}{2}}", "0.5", 1),
    (r"\boxed{\{1,2\}}", r"\{1,2\}", 1),
    (r"\[\boxed{x = 5}\]", "5", 1),
    (r"answer: $\boxed{\dfrac{\sqrt{3}}{2}}$", r"\frac{\sqrt3}{2}", 1),
    (r"\boxed{\text{Monday}}", "Monday", 1),
    (r"The answer is \boxed{42}", "42", 1),
    (r"The answer is \boxed{41}", "42", 0),
    (r"Answer: \boxed{12} dollars", "12", 1),
    (r"\boxed{\boxed{5}}", "5", 1),
    (r"\boxedfoo{5}", "5", 0),
    (r"\boxed {7}", "7", 1),
    (r"\boxed{\left(1, 2\right)}", "(1,2)", 1),
    ("x" * 100_000 + r" \boxed{7}", "7", 1),
    ("x" * 100_000 + r" so \boxed{7", "7", 0),
    (r"\boxed{" + "{" * 10_000 + "5" + "}" * 10_000 + "}", "5", 0),
    (r"\boxed{" + "{" * 10_000, "5", 0),
    (r"\boxed{" + "1" * 50_000 + "}", "5", 0),
    (r"\boxed{9^{9^{9^9}}}", "5", 0),
    (r"\boxed{\def\five{5}\five}", "5", 0),
    (r"\boxed{\frac{1}{2}", "0.5", 0),
    (r"\boxed{1,234}", "1234", 1),
    ("The total is $\\boxed{1,234}$ dollars.", "1,234", 1),
    (r"So the probability is \boxed{\frac{3}{8}}.", r"0.375", 1),
    (r"<think>" + "hmm " * 1000 + r"</think>\boxed{\pi}", r"\pi", 1),
]

ANSWER_TAG_COMPLETIONS = [
    (r"<think>x</think><answer>42</answer>", "42", 1),
    (r"<answer>41</answer>", "42", 0),
    (r"<answer> \boxed{42} </answer>", "42", 1),
    (r"<answer>42", "42", 0),
    (r"<answer></answer>", "42", 0),
    (r"<answer>1</answer> then <answer>42</answer>", "42", 1),
    (r"<think><answer>42</answer></think>", "42", 0),
    (r"<answer>$\frac{1}{2}$</answer>", "0.5", 1),
    (r"\boxed{42}", "42", 0),
    (r"<answer>x = 3</answer>", "3", 1),
    (r"<answer>\text{Monday}</answer>", "monday", 1),
    (r"<answer>(1, 2]</answer>", "(1,2]", 1),
]


def _boxed(answer: str) -> str:
    return _REASONING + "So the final answer is $\\boxed{" + answer + "}$."


def test_at_least_300_graded_cases():
    assert len(ANSWER_CASES) + len(COMPLETIONS) + len(ANSWER_TAG_COMPLETIONS) >= 300


def _disagreements(completions, golds, expected, answer_tag=False) -> list[str]:
    scores = math_reward(completions, golds, answer_tag=answer_tag)
    assert scores.dtype == torch.float32 and scores.shape == (len(completions),)
    return [
        f"{c[-80:]!r} vs gold {g!r}: got {s:g}, expected {e}"
        for c, g, e, s in zip(completions, golds, expected, scores.tolist())
        if s != e
    ]


@pytest.mark.timeout(300)
def test_answer_cases_graded_like_a_human():
    completions = [_boxed(a) for a, _, _ in ANSWER_CASES]
    golds = [g for _, g, _ in ANSWER_CASES]
    expected = [e for _, _, e in ANSWER_CASES]
    assert _disagreements(completions, golds, expected) == []


@pytest.mark.timeout(300)
def test_completion_cases():
    completions, golds, expected = zip(*COMPLETIONS)
    assert _disagreements(list(completions), list(golds), list(expected)) == []


@pytest.mark.timeout(120)
def test_answer_tag_cases():
    completions, golds, expected = zip(*ANSWER_TAG_COMPLETIONS)
    assert _disagreements(list(completions), list(golds), list(expected), answer_tag=True) == []


@pytest.mark.timeout(120)
def test_single_pairs_and_repeat_calls_agree():
    # The second call hits the caches; verdicts must not change.
    for _ in range(2):
        assert answers_equal(r"2\sqrt2", r"\sqrt8")
        assert not answers_equal(r"0.5", r"50\%")


@pytest.mark.timeout(120)
def test_registered_rewards_take_the_answer_column():
    completions = [r"\boxed{5}", r"<answer>5</answer>", r"\boxed{6}"]
    columns = {"answer": ["5", "5", "5"], "problem": ["p", "p", "p"]}
    assert get_reward("math")(completions, **columns).tolist() == [1.0, 0.0, 0.0]
    assert get_reward("math_answer_tag")(completions, **columns).tolist() == [0.0, 1.0, 0.0]


def test_empty_batch():
    scores = math_reward([], [])
    assert scores.shape == (0,) and scores.dtype == torch.float32


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        math_reward([r"\boxed{1}"], ["1", "2"])


# --- the symbolic fallback pool ---------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(180)
def test_pool_kills_a_timed_out_worker_and_recovers():
    pool = FallbackPool(size=1)
    try:
        assert pool.warm()
        pid = pool._workers[0].proc.pid
        # The item is slow on purpose (the worker sleeps 60 s); the call returns at the timeout.
        assert pool.run([("sleep", (60,))], item_timeout=0.5, batch_timeout=30.0) == [None]
        assert not _alive(pid)
        # The replacement worker answers the next call.
        result = pool.run([("equal", (r"2\sqrt2", r"\sqrt8"))], item_timeout=30.0, batch_timeout=90.0)
        assert result == [True]
        assert pool._workers[0].proc.pid != pid
    finally:
        pids = [w.proc.pid for w in pool._workers]
        pool.close()
    assert not any(_alive(p) for p in pids)  # close() leaves no process behind


@pytest.mark.timeout(180)
def test_timed_out_item_scores_zero_and_the_next_call_recovers():
    completion = [_boxed(r"\sqrt{5+2\sqrt{6}}")]
    gold = [r"\sqrt{2}+\sqrt{3}"]
    math_reward([_boxed(r"2\sqrt2")], [r"\sqrt8"])  # warm the pool so start-up is not timed
    assert math_reward(completion, gold, timeout_s=0.001).tolist() == [0.0]
    assert math_reward(completion, gold).tolist() == [1.0]


@pytest.mark.timeout(180)
def test_works_from_a_non_main_thread():
    out: dict[str, list[float]] = {}

    def score() -> None:
        out["scores"] = math_reward(
            [_boxed(r"\frac{\sqrt{6}}{3}"), _boxed("7"), _boxed(r"\sqrt{3}")], [r"\sqrt{\frac23}", "7", "2"]
        ).tolist()

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(timeout=150)
    assert not thread.is_alive()
    assert out["scores"] == [1.0, 1.0, 0.0]
