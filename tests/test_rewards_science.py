"""Multiple-choice letter extraction."""
import pytest

from m2rl.rewards.science import extract_choice, verify

CASES = [
    ("The answer is (C).", 4, "C"),
    ("The answer is (C). B", 4, "C"),  # a stray letter after the answer
    ("The answer is (C).\n\nD", 4, "C"),
    ("Answer: B", 4, "B"),
    ("the correct answer is **D**", 4, "D"),
    ("The answer is option C because A is too small.", 4, "C"),
    ("I first thought A, but D is correct.", 4, "D"),
    ("Final: \\boxed{B}", 4, "B"),
    ("\\boxed{\\text{C}}", 4, "C"),
    ("\\boxed{E: a polygenic score}", 10, "E"),
    ("\\boxed{C} then later \\boxed{A}", 4, "A"),
    ("After weighing them, B.", 4, "B"),
    ("A cat is not an option here, so (B)", 4, "B"),  # "A cat": an article
    ("I think it must be C", 4, "C"),  # "I think": a pronoun
    ("The answer is (E).", 4, None),  # not one of the 4 choices
    ("the answer is a bit unclear", 4, None),  # lowercase "a" is not a choice
    ("No idea.", 4, None),
    ("The answer is J", 10, "J"),
]


@pytest.mark.parametrize("text,n,expected", CASES)
def test_extract_choice(text, n, expected):
    assert extract_choice(text, n) == expected


def test_verify_scores_the_letter():
    spec = {"choices": ["1", "2", "3", "4"], "answer": "C"}
    assert verify("The answer is (C). B", spec)[0] == 1.0
    assert verify("The answer is (B).", spec)[0] == 0.0
