"""Instruction following: the 25 IFEval checkers that lm-eval ships (and IFBench's, m2rl.rewards.ifbench).

lm-eval's checkers count sentences with NLTK's Punkt model (`punkt_tab`), which it tries
to download on import. Nothing downloads here: `ensure_nltk_data()` (m2rl.rewards.nltk_data)
writes the NLTK data built offline under `$M2RL_CACHE/nltk_data` and puts it on NLTK's
path before lm-eval is imported.
"""
from __future__ import annotations

import functools

from m2rl.rewards.nltk_data import ensure_nltk_data  # noqa: F401  (re-exported)


@functools.lru_cache(maxsize=None)
def lm_eval_ifeval():
    """lm-eval's (instructions_registry, instructions_util) modules, imported only after
    the offline NLTK data is in place (their import otherwise tries a download)."""
    ensure_nltk_data()
    import langdetect

    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util

    return instructions_registry, instructions_util


def registry() -> dict:
    """Instruction id -> checker class: the 25 IFEval instructions."""
    return dict(lm_eval_ifeval()[0].INSTRUCTION_DICT)


def _registry(checkers: str) -> dict:
    if checkers == "ifeval":
        return registry()
    if checkers == "ifbench":
        from m2rl.rewards import ifbench
        return ifbench.registry()
    raise ValueError(f"reward_spec.checkers: {checkers!r} is not a checker set (ifeval or ifbench)")


def checker(instruction_id: str, kwargs: dict | None, prompt: str = "", checkers: str = "ifeval"):
    """A checker built with `kwargs`: empty values dropped, as lm-eval does for IFEval;
    only None values for IFBench, as its evaluation_lib does."""
    keep = (lambda v: v is not None) if checkers == "ifbench" else bool
    inst = _registry(checkers)[instruction_id](instruction_id)
    inst.build_description(**{k: v for k, v in (kwargs or {}).items() if keep(v)})
    args = inst.get_instruction_args()
    if args and "prompt" in args:
        inst.build_description(prompt=prompt)
    return inst


def loose_variants(response: str) -> list[str]:
    """IFEval's loose form: the response with markdown `*` removed and/or its first and/or
    last line dropped (the 8 combinations its evaluation tries)."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
           "\n".join(lines[1:-1]).strip()]
    return cut[:1] + [cut[0].replace("*", "")] + cut[1:] + [c.replace("*", "") for c in cut[1:]]


def _follows(inst, texts: list[str]) -> bool:
    return any(t.strip() and inst.check_following(t) for t in texts)


def verify(answer_text: str, spec: dict) -> tuple[float, dict]:
    """Reward 1 when every instruction is followed (prompt-level strict). The spec may
    name its checker set (`checkers`: ifeval, the default, or ifbench); with `loose` set,
    info also has the loose result (`loose`, `loose_followed`), and `mode: loose` makes
    it the reward."""
    ids = list(spec["instruction_id_list"])
    kwargs = list(spec.get("kwargs") or [{}] * len(ids))
    checkers = spec.get("checkers", "ifeval")
    loose = bool(spec.get("loose")) or spec.get("mode") == "loose"
    variants = loose_variants(answer_text) if loose else []
    followed, loose_followed = [], []
    for iid, kw in zip(ids, kwargs):
        inst = checker(iid, kw, spec.get("prompt", ""), checkers)
        followed.append(_follows(inst, [answer_text]))
        if loose:
            loose_followed.append(followed[-1] or _follows(inst, variants[1:]))
    frac = sum(followed) / len(followed) if followed else 0.0
    strict = float(bool(followed) and all(followed))
    info = {"followed": followed, "fraction": frac}
    if not loose:
        return strict, info
    info.update(strict=strict, loose=float(bool(loose_followed) and all(loose_followed)),
                loose_followed=loose_followed)
    return (info["loose"] if spec.get("mode") == "loose" else strict), info
