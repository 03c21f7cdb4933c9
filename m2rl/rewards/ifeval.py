"""Instruction following: the 25 IFEval checkers that lm-eval ships.

lm-eval's checkers count sentences with NLTK's Punkt model (`punkt_tab`), which it tries
to download on import. Nothing downloads here: `ensure_nltk_data()` writes a Punkt model
built offline from a fixed list of English abbreviations (no training text) under
`$M2RL_CACHE/nltk_data` and puts it on NLTK's path before lm-eval is imported.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from m2rl.data.cache import atomic_dir, cache_root

# Lower-cased, without the final period, as Punkt stores them.
_ABBREVIATIONS = (
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e inc ltd co corp jan feb mar apr jun jul"
    " aug sep sept oct nov dec no nos vol fig figs eq approx dept est al cf a.m p.m u.s u.k"
    " ph.d b.a m.a gen col lt sgt capt rev hon gov sen rep pp ed eds"
).split()


def ensure_nltk_data(root: Path | None = None) -> Path:
    """Build the offline `punkt_tab/english` model once; return the NLTK data root."""
    root = Path(root) if root else cache_root() / "nltk_data"
    target = root / "tokenizers" / "punkt_tab" / "english"
    if not (target / "abbrev_types.txt").exists():
        with atomic_dir(target) as tmp:
            (tmp / "abbrev_types.txt").write_text("\n".join(sorted(_ABBREVIATIONS)) + "\n")
            for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
                (tmp / name).write_text("")
    os.environ.setdefault("NLTK_DATA", str(root))
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


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


def checker(instruction_id: str, kwargs: dict | None, prompt: str = ""):
    """A checker built with `kwargs` (empty values dropped, as lm-eval does)."""
    inst = registry()[instruction_id](instruction_id)
    inst.build_description(**{k: v for k, v in (kwargs or {}).items() if v})
    args = inst.get_instruction_args()
    if args and "prompt" in args:
        inst.build_description(prompt=prompt)
    return inst


def verify(answer_text: str, spec: dict) -> tuple[float, dict]:
    ids = list(spec["instruction_id_list"])
    kwargs = list(spec.get("kwargs") or [{}] * len(ids))
    followed = []
    for iid, kw in zip(ids, kwargs):
        inst = checker(iid, kw, spec.get("prompt", ""))
        followed.append(bool(answer_text.strip()) and bool(inst.check_following(answer_text)))
    frac = sum(followed) / len(followed) if followed else 0.0
    return float(bool(followed) and all(followed)), {"followed": followed, "fraction": frac}
