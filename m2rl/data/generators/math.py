"""Math word and arithmetic problems with exact answers (integers or reduced fractions)."""
from __future__ import annotations

import math
import random
from fractions import Fraction

PROMPT = "{question}\n\nSolve the problem step by step. Put the final answer in \\boxed{{}}."
_ITEMS = [("apples", "box"), ("pencils", "pack"), ("cookies", "jar"), ("books", "shelf"),
          ("eggs", "carton"), ("marbles", "bag"), ("stamps", "album"), ("cards", "deck")]


def latex(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def _arith(r):
    a, b = r.randint(2, 999), r.randint(2, 999)
    op = r.choice("+-*")
    val = {"+": a + b, "-": a - b, "*": a * b}[op]
    sym = {"+": "+", "-": "-", "*": "\\times"}[op]
    return f"What is ${a} {sym} {b}$?", Fraction(val), [f"{a} {op} {b} = {val}."]


def _fractions(r):
    x = Fraction(r.randint(1, 12), r.randint(2, 12))
    y = Fraction(r.randint(1, 12), r.randint(2, 12))
    op = r.choice("+-*")
    val = {"+": x + y, "-": x - y, "*": x * y}[op]
    sym = {"+": "+", "-": "-", "*": "\\times"}[op]
    q = (f"Compute $\\frac{{{x.numerator}}}{{{x.denominator}}} {sym} "
         f"\\frac{{{y.numerator}}}{{{y.denominator}}}$. Give the answer in lowest terms.")
    return q, val, [f"{x} {op} {y} = {val} in lowest terms."]


def _percent_of(r):
    p, base = r.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 80]), r.randint(2, 80) * 20
    val = Fraction(p * base, 100)
    return f"What is {p}% of {base}?", val, [f"{p}% of {base} is {p}/100 * {base} = {val}."]


def _what_percent(r):
    base = r.choice([20, 40, 50, 80, 100, 200, 250, 400, 500])
    p = r.choice([5, 10, 20, 25, 40, 50, 60, 75, 80])
    part = base * p // 100
    return (f"What percent of {base} is {part}?", Fraction(p),
            [f"{part}/{base} = {Fraction(part, base)}, which is {p} percent."])


def _linear(r):
    a, x, b = r.randint(2, 15), r.randint(-30, 30), r.randint(-50, 50)
    c = a * x + b
    sb = f"+ {b}" if b >= 0 else f"- {-b}"
    return (f"Solve for $x$: ${a}x {sb} = {c}$.", Fraction(x),
            [f"{a}x = {c} - ({b}) = {c - b}.", f"x = {c - b}/{a} = {x}."])


def _word(r):
    item, unit = r.choice(_ITEMS)
    per, n, extra = r.randint(3, 48), r.randint(2, 40), r.randint(0, 30)
    val = per * n + extra
    q = (f"A {unit} holds {per} {item}. Sam has {n} full {unit}s and {extra} loose {item}. "
         f"How many {item} does Sam have in total?")
    return q, Fraction(val), [f"{n} * {per} = {per * n}.", f"{per * n} + {extra} = {val}."]


def _gcd_lcm(r):
    a, b = r.randint(6, 240), r.randint(6, 240)
    if r.random() < 0.5:
        g = math.gcd(a, b)
        return f"What is the greatest common divisor of {a} and {b}?", Fraction(g), [f"gcd({a}, {b}) = {g}."]
    lcm = a * b // math.gcd(a, b)
    return f"What is the least common multiple of {a} and {b}?", Fraction(lcm), [f"lcm({a}, {b}) = {lcm}."]


def _mean(r):
    xs = [r.randint(1, 99) for _ in range(r.randint(3, 6))]
    val = Fraction(sum(xs), len(xs))
    return (f"What is the mean of {', '.join(map(str, xs))}? Give an exact answer.", val,
            [f"The sum is {sum(xs)} and there are {len(xs)} numbers.", f"{sum(xs)}/{len(xs)} = {val}."])


def _powers(r):
    a, b = r.randint(2, 30), r.randint(1, 20)
    val = a * a - b * b
    return f"What is ${a}^2 - {b}^2$?", Fraction(val), [f"{a * a} - {b * b} = {val}."]


TEMPLATES = [_arith, _fractions, _percent_of, _what_percent, _linear, _word, _gcd_lcm, _mean, _powers]


def make(r: random.Random) -> dict:
    question, value, steps = r.choice(TEMPLATES)(r)
    answer = latex(value)
    response = "<think>\n" + "\n".join(steps) + "\n</think>\n\n" + f"The answer is $\\boxed{{{answer}}}$."
    return {"key": question, "prompt": PROMPT.format(question=question),
            "reward_spec": {"answer": answer}, "response": response}
