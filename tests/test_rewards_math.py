"""Math verification: the cases that are easy to get wrong."""
import time

import pytest

from m2rl.rewards import math as mathv

CASES = [
    # (gold, response, expected reward)
    ("\\frac{1}{2}", "So the answer is \\boxed{0.5}.", 1.0),
    ("0.5", "\\boxed{\\frac{1}{2}}", 1.0),
    ("\\frac{1}{2}", "\\boxed{1/2}", 1.0),
    ("1/2", "\\boxed{\\dfrac12}", 1.0),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", 1.0),
    ("\\frac{1}{2}", "\\boxed{0.25}", 0.0),
    ("\\frac{1}{2}", "\\boxed{2}", 0.0),
    # nested boxes and braces
    ("7", "\\boxed{\\boxed{7}}", 1.0),
    ("\\frac{\\sqrt{3}}{2}", "Thus $\\boxed{\\frac{\\sqrt{3}}{2}}$.", 1.0),
    # several boxes: the last one is the answer
    ("4", "First \\boxed{3}, but correcting the sign: \\boxed{4}", 1.0),
    ("3", "First \\boxed{3}, but correcting the sign: \\boxed{4}", 0.0),
    # percentages and units
    ("25", "\\boxed{25\\%}", 1.0),
    ("25\\%", "\\boxed{25}", 1.0),
    ("25", "\\boxed{0.25}", 0.0),
    ("36", "\\boxed{36 \\text{ cm}}", 1.0),
    ("36", "\\boxed{36\\text{cm}^2}", 1.0),
    ("36", "\\boxed{\\$36}", 1.0),
    ("90", "\\boxed{90^\\circ}", 1.0),
    ("1000", "\\boxed{1,000}", 1.0),
    # signs, plain text, no answer
    ("-8", "\\boxed{-8}", 1.0),
    ("-8", "\\boxed{8}", 0.0),
    ("5", "The answer is 5.", 1.0),
    ("5", "I do not know.", 0.0),
]


@pytest.mark.parametrize("gold,response,expected", CASES)
def test_math_cases(gold, response, expected):
    reward, info = mathv.verify(response, {"answer": gold})
    assert reward == expected, info


def test_math_timeout_is_bounded():
    t0 = time.monotonic()
    reward, _ = mathv.verify("\\boxed{2^{10^{10}}}", {"answer": "2"}, timeout_s=2)
    assert reward == 0.0
    assert time.monotonic() - t0 < 8


def test_last_boxed():
    assert mathv.last_boxed("a \\boxed{3} b \\boxed{\\boxed{4}} c") == "\\boxed{\\boxed{4}}"
    assert mathv.last_boxed("\\boxed{\\frac{1}{2}") is None
    assert mathv.last_boxed("no box") is None
