"""Humanity's Last Exam, text-only questions (hub id `cais/hle`, or a local file of it).

Published fields: `id`, `question`, `image` ("" for text-only), `answer`, `answer_type`
("exactMatch" or "multipleChoice"), `rationale`, `raw_subject`, `category`. Questions with
an image are dropped (the models here read text). The prompt is HLE's own system prompt:
the response ends with "Answer: ..." and "Confidence: ...".

Scoring is rule-based, not HLE's LLM judge: multiple choice, the letter of the last
"Answer: X" (m2rl.rewards.science) must be the gold letter; exact match, the text after
the last "Answer:" must equal the gold answer as text (case, spacing, final period
ignored) or by mathematical equivalence (m2rl.rewards.math with `answer_line`). A judge
would also accept paraphrases, so this is a lower bound.
"""
from __future__ import annotations

import re
import string

from m2rl.eval.items import EvalItem, user
from m2rl.eval.sources import need, records

HUB = "cais/hle"
SYSTEM_EXACT = ("Your response should be in the following format:\nExplanation: {your explanation for "
                "your final answer}\nExact Answer: {your succinct, final answer}\nConfidence: {your "
                "confidence score between 0% and 100% for your answer}")
SYSTEM_MC = ("Your response should be in the following format:\nExplanation: {your explanation for "
             "your answer choice}\nAnswer: {your chosen answer}\nConfidence: {your confidence score "
             "between 0% and 100% for your answer}")
_CHOICE = re.compile(r"(?m)^\s*([A-Z])[.)]\s")


def hle(source: str | None = None) -> list[EvalItem]:
    """HLE text-only: 'Answer: ...'; the MC letter, or the exact answer as text or math."""
    where = str(source or HUB)
    out = []
    for r in records(source or HUB, split="test"):
        need(r, ("id", "question", "answer", "answer_type"), where)
        if r.get("image"):
            continue
        meta = {k: r.get(k) for k in ("answer_type", "raw_subject", "category")}
        if r["answer_type"] == "multipleChoice":
            letters = _CHOICE.findall(r["question"])
            n = max(string.ascii_uppercase.index(max(letters)) + 1 if letters else 0,
                    string.ascii_uppercase.index(r["answer"].strip().upper()) + 1)
            spec, domain, system = {"choices": list(string.ascii_uppercase[:n]), "answer": r["answer"].strip()}, \
                "science", SYSTEM_MC
        else:
            spec, domain, system = {"answer": r["answer"], "answer_line": True}, "math", SYSTEM_EXACT
        out.append(EvalItem(f"hle/{r['id']}", "hle", domain, user(r["question"], system), spec, meta))
    return out


def gold(item: EvalItem) -> str:
    return f"Explanation: worked it out.\nAnswer: {item.reward_spec['answer']}\nConfidence: 90%"
