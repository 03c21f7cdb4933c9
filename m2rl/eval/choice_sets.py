"""Multiple-choice benchmarks: GPQA-Diamond and MMLU-Redux (hub id or local file).

GPQA-Diamond (`Idavidrein/gpqa`, config `gpqa_diamond`, 198 questions; the published
CSV/JSON columns `Question`, `Correct Answer`, `Incorrect Answer 1..3`, `Record ID`).
The four options are shuffled per question with a seed from its Record ID (the same
order on every load and machine), and the prompt is lighteval's: the last line must be
"Answer: $LETTER". MMLU-Redux 2.0 (`edinburgh-dawg/mmlu-redux-2.0`, one config per
subject, or a local file of its rows: `question`, `choices` (4), `answer` (index 0-3),
`error_type`); rows whose `error_type` is not "ok" are dropped (the re-annotation found
the question or its key wrong), `subject` is kept in meta.

Scoring: the chosen letter, read by the science verifier (m2rl.rewards.science: the
last `\\boxed{X}`, else the last "Answer: X" / "answer is X", ...), must be the gold
letter; only letters of the question's options count.
"""
from __future__ import annotations

import hashlib
import random
import string

from m2rl.eval.items import EvalItem, user
from m2rl.eval.sources import need, records

GPQA_HUB, GPQA_CONFIG = "Idavidrein/gpqa", "gpqa_diamond"
MMLU_REDUX_HUB = "edinburgh-dawg/mmlu-redux-2.0"
# MMLU's 57 subjects: MMLU-Redux 2.0's hub configs (listing them would need the network).
MMLU_SUBJECTS = tuple("""
abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry
college_computer_science college_mathematics college_medicine college_physics computer_security
conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts
high_school_biology high_school_chemistry high_school_computer_science high_school_european_history
high_school_geography high_school_government_and_politics high_school_macroeconomics
high_school_mathematics high_school_microeconomics high_school_physics high_school_psychology
high_school_statistics high_school_us_history high_school_world_history human_aging human_sexuality
international_law jurisprudence logical_fallacies machine_learning management marketing medical_genetics
miscellaneous moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting
professional_law professional_medicine professional_psychology public_relations security_studies
sociology us_foreign_policy virology world_religions""".split())
PROMPT = ("Answer the following multiple choice question. The last line of your response should be "
          "of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of "
          "{letters}. Think step by step before answering.\n\n{question}\n\n{options}")


def _prompt(question: str, choices: list[str]) -> str:
    letters = string.ascii_uppercase[:len(choices)]
    options = "\n".join(f"{letter}) {c}" for letter, c in zip(letters, choices))
    return PROMPT.format(letters=letters, question=question.strip(), options=options)


def _item(benchmark: str, rid: str, question: str, choices: list[str], gold: int, meta: dict) -> EvalItem:
    spec = {"choices": choices, "answer": string.ascii_uppercase[gold]}
    return EvalItem(f"{benchmark}/{rid}", benchmark, "science", user(_prompt(question, choices)), spec, meta)


def gpqa_diamond(source: str | None = None) -> list[EvalItem]:
    """GPQA-Diamond (198): 'Answer: X' on the last line; X must be the gold letter."""
    where = str(source or GPQA_HUB)
    out = []
    for r in records(source or GPQA_HUB, GPQA_CONFIG, split="train"):
        need(r, ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                 "Incorrect Answer 3", "Record ID"), where)
        choices = [str(r[k]).strip() for k in ("Correct Answer", "Incorrect Answer 1",
                                               "Incorrect Answer 2", "Incorrect Answer 3")]
        seed = int(hashlib.sha256(str(r["Record ID"]).encode()).hexdigest()[:16], 16)
        order = random.Random(seed).sample(range(4), 4)
        out.append(_item("gpqa_diamond", r["Record ID"], r["Question"], [choices[i] for i in order],
                         order.index(0), {"domain": r.get("High-level domain"), "subdomain": r.get("Subdomain")}))
    return out


def mmlu_redux(source: str | None = None, subjects: list[str] | None = None) -> list[EvalItem]:
    """MMLU-Redux 2.0 ("ok" rows): 'Answer: X'; X must be the gold letter.

    From the hub each subject config in `subjects` (default: all 57) is read; a local
    file holds rows of any subjects (a `subject` column is kept)."""
    rows = []
    for subject in (subjects or (MMLU_SUBJECTS if source is None else [None])):
        for r in records(source or MMLU_REDUX_HUB, subject, split="test"):
            rows.append({**r, "subject": subject or r.get("subject")})
    out = []
    for i, r in enumerate(rows):
        need(r, ("question", "choices", "answer", "error_type"), str(source or MMLU_REDUX_HUB))
        if r["error_type"] != "ok":
            continue
        rid = f"{r.get('subject') or 'all'}-{r.get('id', i)}"
        out.append(_item("mmlu_redux", rid, r["question"], [str(c) for c in r["choices"]], int(r["answer"]),
                         {"subject": r.get("subject"), "source": r.get("source")}))
    return out


def gold(item: EvalItem) -> str:
    return f"Thinking it through, the right option is clear.\nAnswer: {item.reward_spec['answer']}"
