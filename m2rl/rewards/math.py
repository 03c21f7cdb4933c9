"""Math answers: rule-based equivalence with the `math-verify` library.

math-verify bounds its own parse and verify steps with SIGALRM timeouts, which only work
in a process's main thread: this runs in the scorer's worker processes (or inline in the
main thread), never in a thread. A percent sign is read as a unit and dropped on both
sides (math-verify alone scores `50\\%` wrong against 50); `0.5` against 50 stays wrong.
With several `\\boxed{}` the last one is the answer (math-verify alone reads them all as a
set, so a corrected answer would never match). A spec with `answer_line: true` (HLE's
"Answer: ..." format) reads the text after the last "Answer:" instead, and also accepts
it when it equals the gold answer as text (case, spaces and final period ignored).
"""
from __future__ import annotations

import re

_PERCENT = re.compile(r"\\?%")
_ANSWER_LINE = re.compile(r"(?im)^\W*(?:(?:exact|final)\s+)?answer\W*:\s*(.+?)\s*$")


def _strip_percent(text: str) -> str:
    return _PERCENT.sub("", text)


def last_boxed(text: str) -> str | None:
    """The last top-level `\\boxed{...}` (braces balanced, nested boxes inside kept)."""
    found, i = None, 0
    while (start := text.find("\\boxed", i)) != -1:
        j = text.find("{", start)
        depth, k = 0, j
        while j != -1 and k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                break
            k += 1
        if j == -1 or depth:
            break
        found, i = text[start:k + 1], k + 1
    return found


def answer_line(text: str) -> str | None:
    """The text after the last line-initial "Answer:" (or "Exact Answer:", "Final Answer:";
    markdown `**` around it allowed)."""
    found = _ANSWER_LINE.findall(text)
    return found[-1].strip("* ") if found else None


def _as_text(s: str) -> str:
    return " ".join(s.strip().rstrip(".").strip("$").lower().split())


def verify(answer_text: str, spec: dict, timeout_s: int = 10) -> tuple[float, dict]:
    if spec.get("answer_line"):
        line = answer_line(answer_text)
        if line is None:
            return 0.0, {"extracted": None, "gold": str(spec["answer"])}
        if _as_text(line) == _as_text(str(spec["answer"])):
            return 1.0, {"extracted": line, "gold": str(spec["answer"]), "text_match": True}
        answer_text = line

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from math_verify import verify as mv_verify

    gold_text = _strip_percent(str(spec["answer"]).strip())
    if not gold_text.startswith("$") and "\\boxed" not in gold_text:
        gold_text = f"${gold_text}$"
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    half = max(1, timeout_s // 2)
    gold = parse(gold_text, extraction_config=configs, parsing_timeout=half)
    answer = last_boxed(answer_text) or answer_text
    pred = parse(_strip_percent(answer), extraction_config=configs, parsing_timeout=half)
    ok = bool(gold) and bool(pred) and mv_verify(gold, pred, timeout_seconds=half)
    return float(ok), {"extracted": str(pred[-1]) if pred else None, "gold": str(spec["answer"])}
