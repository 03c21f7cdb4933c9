"""Each domain's held-out split of the bundled generators (m2rl.data.generators), as a
benchmark: `heldout_math`, `heldout_code`, `heldout_science`, `heldout_if`.

These are the prompts a tiny model trained on the generators can learn in minutes (the
embedded default's eval), and disjoint from every training split by construction (a
task's split is a hash of its key). `source` is the generator seed ("0" by default);
100 items each.

Answer format and scoring: those of the domain's generator and verifier (m2rl.rewards):
math a boxed number by equivalence, code a function whose tests all pass in the sandbox,
science the letter of the right choice, if every instruction of the prompt followed.
"""
from __future__ import annotations

from m2rl.eval.items import EvalItem, user

N_ITEMS = 100
DEFAULT_SOURCE = "generators (seed 0)"


def _heldout(domain: str, source: str | None) -> list[EvalItem]:
    from m2rl.data import generators

    seed = 0 if source in (None, DEFAULT_SOURCE) else int(source)
    tasks = generators.generate(domain, "eval", N_ITEMS, seed, need_response=True)
    return [EvalItem(f"heldout_{domain}/{t['key']}", f"heldout_{domain}", domain, user(t["prompt"]),
                     t["reward_spec"], {"response": t["response"]}) for t in tasks]


def math(source: str | None = None) -> list[EvalItem]:
    """The math generator's held-out split: a boxed number, equal by math equivalence."""
    return _heldout("math", source)


def code(source: str | None = None) -> list[EvalItem]:
    """The code generator's held-out split: every test passes in the sandbox."""
    return _heldout("code", source)


def science(source: str | None = None) -> list[EvalItem]:
    """The science generator's held-out split: the letter of the right choice."""
    return _heldout("science", source)


def instructions(source: str | None = None) -> list[EvalItem]:
    """The instruction generator's held-out split: every instruction followed."""
    return _heldout("if", source)


def gold(item: EvalItem) -> str:
    return item.meta["response"]
