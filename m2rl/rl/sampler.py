"""Which prompts an RL step trains on: a function of the step alone, so a resumed run
(or an async pipeline restarted from a checkpoint) draws the same prompts."""
from __future__ import annotations


class PromptSampler:
    """Prompts of step k: positions [k*B, (k+1)*B) of an endless stream of per-epoch
    permutations seeded by (seed, epoch); the position is a function of the step."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        import random

        if epoch not in self._perms:
            order = list(range(self.n))
            random.Random(f"{self.seed}:grpo:{epoch}").shuffle(order)
            self._perms = {epoch: order}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        return [self._perm(p // self.n)[p % self.n] for p in range(step * self.batch, (step + 1) * self.batch)]

    def state(self, step: int) -> dict:
        pos = step * self.batch
        return {"position": pos, "epoch": pos // self.n, "seed": self.seed, "n": self.n}
