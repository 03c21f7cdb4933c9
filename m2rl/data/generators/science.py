"""Science multiple-choice questions (chemistry facts, physics computations, units)."""
from __future__ import annotations

import random
import string

PROMPT = ("Answer the following multiple choice question. Think step by step, then give the "
          "letter of the correct option inside \\boxed{{}}.\n\n{question}\n{options}")
_ELEMENTS = [("Hydrogen", "H", 1), ("Helium", "He", 2), ("Lithium", "Li", 3), ("Beryllium", "Be", 4),
             ("Boron", "B", 5), ("Carbon", "C", 6), ("Nitrogen", "N", 7), ("Oxygen", "O", 8),
             ("Fluorine", "F", 9), ("Neon", "Ne", 10), ("Sodium", "Na", 11), ("Magnesium", "Mg", 12),
             ("Aluminium", "Al", 13), ("Silicon", "Si", 14), ("Phosphorus", "P", 15), ("Sulfur", "S", 16),
             ("Chlorine", "Cl", 17), ("Argon", "Ar", 18), ("Potassium", "K", 19), ("Calcium", "Ca", 20),
             ("Iron", "Fe", 26), ("Copper", "Cu", 29), ("Zinc", "Zn", 30), ("Silver", "Ag", 47),
             ("Tin", "Sn", 50), ("Iodine", "I", 53), ("Gold", "Au", 79), ("Mercury", "Hg", 80),
             ("Lead", "Pb", 82), ("Uranium", "U", 92)]
_PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
# quantity name, formula text, unit, f(a, b), (a name, a unit, range), (b name, b unit, range)
_FORMULAS = [
    ("net force", "F = m a", "N", lambda a, b: a * b, ("mass", "kg", (1, 60)), ("acceleration", "m/s^2", (1, 20))),
    ("average speed", "v = d / t", "m/s", lambda a, b: a / b, ("distance", "m", (10, 900)), ("time", "s", (2, 30))),
    ("density", "rho = m / V", "kg/m^3", lambda a, b: a / b, ("mass", "kg", (2, 500)), ("volume", "m^3", (1, 25))),
    ("voltage", "V = I R", "V", lambda a, b: a * b, ("current", "A", (1, 20)), ("resistance", "ohm", (2, 100))),
    ("kinetic energy", "E = m v^2 / 2", "J", lambda a, b: a * b * b / 2, ("mass", "kg", (1, 40)), ("speed", "m/s", (1, 30))),
    ("work", "W = F d", "J", lambda a, b: a * b, ("force", "N", (2, 200)), ("distance", "m", (1, 50))),
    ("power", "P = W / t", "W", lambda a, b: a / b, ("work", "J", (50, 5000)), ("time", "s", (2, 50))),
]


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x - round(x)) > 1e-9 else str(int(round(x)))


def _element(r):
    name, sym, z = r.choice(_ELEMENTS)
    others = [e for e in _ELEMENTS if e[0] != name]
    if r.random() < 0.5:
        wrong = [e[1] for e in r.sample(others, 9)]
        return f"What is the chemical symbol of {name}?", sym, wrong, f"{name} has the symbol {sym}."
    wrong = [e[0] for e in r.sample(others, 3)]
    return f"Which element has atomic number {z}?", name, wrong, f"Atomic number {z} is {name}."


def _formula(r):
    qty, formula, unit, f, (an, au, ar), (bn, bu, br) = r.choice(_FORMULAS)
    a, b = r.randint(*ar), r.randint(*br)
    val = f(a, b)
    wrong = {_fmt(x) for x in (val * 2, val / 2, val + b, abs(val - a) or val + 1, a + b, val * 10)}
    wrong.discard(_fmt(val))
    q = f"An object has {an} {a} {au} and {bn} {b} {bu}. What is its {qty}?"
    return (q, f"{_fmt(val)} {unit}", [f"{w} {unit}" for w in sorted(wrong)][:3],
            f"{formula} gives {_fmt(val)} {unit}.")


def _planet(r):
    i = r.randrange(len(_PLANETS))
    wrong = r.sample([p for p in _PLANETS if p != _PLANETS[i]], 3)
    nth = {1: "1st", 2: "2nd", 3: "3rd"}.get(i + 1, f"{i + 1}th")
    return f"Which planet is the {nth} planet from the Sun?", _PLANETS[i], wrong, f"The order is {', '.join(_PLANETS)}."


def _units(r):
    value = r.randint(1, 99) / r.choice([1, 2, 4, 10])
    src, dst, factor = r.choice([("km", "m", 1000), ("kg", "g", 1000), ("hours", "minutes", 60),
                                 ("m", "cm", 100), ("L", "mL", 1000), ("minutes", "seconds", 60)])
    val = value * factor
    wrong = sorted({_fmt(val / 10), _fmt(val * 10), _fmt(value * (factor + 1)), _fmt(val / factor)} - {_fmt(val)})[:3]
    return (f"How many {dst} are in {_fmt(value)} {src}?", f"{_fmt(val)} {dst}",
            [f"{w} {dst}" for w in wrong], f"1 {src} = {factor} {dst}, so {_fmt(value)} {src} = {_fmt(val)} {dst}.")


TEMPLATES = [_element, _formula, _planet, _units]


def make(r: random.Random) -> dict:
    question, right, wrong, why = r.choice(TEMPLATES)(r)
    choices = [right] + list(dict.fromkeys(w for w in wrong if w != right))
    r.shuffle(choices)
    letter = string.ascii_uppercase[choices.index(right)]
    options = "\n".join(f"{string.ascii_uppercase[i]}: {c}" for i, c in enumerate(choices))
    response = f"<think>\n{why}\n</think>\n\nThe answer is \\boxed{{{letter}}}."
    return {"key": question + "|" + "|".join(choices),
            "prompt": PROMPT.format(question=question, options=options),
            "reward_spec": {"choices": choices, "answer": letter}, "response": response}
