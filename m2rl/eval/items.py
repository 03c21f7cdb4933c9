"""What every benchmark loader returns: `EvalItem`s, and each benchmark's `Sampling`.

An item is one prompt in the project's sample schema (m2rl/data/schema.py) plus its
benchmark: `domain` routes it to a verifier of m2rl.rewards and `reward_spec` holds the
gold answer and how to score it (what that verifier reads), so `item.sample()` goes
straight into `m2rl.rewards.Scorer.score`. `meta` keeps the source's own fields that
scoring does not need (its original id, subject, date...).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampling:
    """Generation defaults of a benchmark: K samples per prompt (`n`), the study's
    temperature 1.0 (the rollout temperature), top_p 0.7, responses up to 32768 tokens."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 0.7
    max_tokens: int = 32768


@dataclass
class EvalItem:
    id: str                 # "<benchmark>/<the source's id>", unique within the benchmark
    benchmark: str
    domain: str             # the m2rl.rewards verifier: math, code, science, if
    messages: list[dict]    # the prompt as chat messages ({"role", "content"})
    reward_spec: dict       # gold answer + scoring rule, as the domain's verifier reads it
    meta: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The last user message: the question as the benchmark states it."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    def sample(self) -> dict:
        """The item as m2rl.rewards scores it."""
        return {"id": self.id, "domain": self.domain, "messages": self.messages,
                "reward_spec": self.reward_spec}


def user(text: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": text}]
