"""Multiple-choice letter extraction, the study's order of evidence.

1. the last `\\boxed{X}` (the prompt asks for it), 2. the last "answer is X" /
"Answer: (X)", 3. the last "X is correct", 4. else the last standalone valid letter
(an "A"/"I" followed by a lowercase word is taken for an article or pronoun, not a choice).
Only letters within the question's choices count.
"""
from __future__ import annotations

import re
import string

_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_IS = re.compile(
    r"(?i:answer)(?:\s+(?i:is)|\s*[:=])?\s*(?:(?i:option|choice)\s*)?[:\-]?[\s(\[*]*([A-Z])(?![A-Za-z])"
)
_IS_CORRECT = re.compile(
    r"(?:option|choice)?\s*[\(\[*]*\b([A-Z])\b[\)\]*]*\s+is\s+(?:the\s+)?(?:correct|right)",
)
_STANDALONE = re.compile(r"(?<![A-Za-z0-9_'])([A-Z])(?![A-Za-z0-9_'])")


def letters_for(n_choices: int) -> str:
    return string.ascii_uppercase[:n_choices]


def _last(pattern: re.Pattern, text: str, valid: str) -> str | None:
    found = None
    for m in pattern.finditer(text):
        letter = next((g for g in m.groups() if g), "").upper()
        if letter and letter in valid:
            found = letter
    return found


def _boxed_letter(text: str, valid: str) -> str | None:
    boxes = _BOXED.findall(text)
    if not boxes:
        return None
    inner = re.sub(r"\\text(?:bf)?\s*\{([^{}]*)\}", r"\1", boxes[-1]).strip(" ()[]*$")
    m = re.match(r"([A-Z])(?:$|[\s:.)\-])", inner)
    return m.group(1) if m and m.group(1) in valid else None


def _standalone_letter(text: str, valid: str) -> str | None:
    found = None
    for m in _STANDALONE.finditer(text):
        letter = m.group(1)
        if letter not in valid:
            continue
        if letter in "AI" and re.match(r"\s+[a-z]", text[m.end():]):
            continue  # "A cat", "I think": an article or a pronoun
        found = letter
    return found


def extract_choice(text: str, n_choices: int) -> str | None:
    valid = letters_for(n_choices)
    for finder in (
        _boxed_letter,
        lambda t, v: _last(_ANSWER_IS, t, v),
        lambda t, v: _last(_IS_CORRECT, t, v),
        _standalone_letter,
    ):
        letter = finder(text, valid)
        if letter:
            return letter
    return None


def verify(answer_text: str, spec: dict) -> tuple[float, dict]:
    choice = extract_choice(answer_text, len(spec["choices"]))
    gold = str(spec["answer"]).strip().upper()
    return float(choice == gold), {"extracted": choice, "gold": gold}
