"""The study's comparison from a reconciled ledger: per-arm totals and the mixed/separate
ratio, overall and per step, per prompt and per generated token."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from m2rl.ledger import Ledger, RunTotals

ARM_ORDER = ("separate", "mixed", "opd", "base", "eval")


@dataclass
class Group:
    """A set of runs whose cost is summed (an arm, or part of one)."""
    name: str
    label: str
    runs: list[RunTotals] = field(default_factory=list)

    @cached_property
    def gpu_s(self) -> float:
        return sum(t.gpu_s for t in self.runs)

    @property
    def steps(self) -> int | None:
        s = [t.run.steps for t in self.trainers if t.run.steps is not None]
        return sum(s) if s else None

    @property
    def trainers(self) -> list[RunTotals]:
        """The runs that train on prompts (not merge jobs, which take no step)."""
        return [t for t in self.runs if t.run.stage != "merge"]

    @property
    def prompts(self) -> tuple[float | None, bool]:
        vals = [t.run.prompts for t in self.trainers]
        if not vals or any(v is None for v, _ in vals):
            return None, False
        return sum(v for v, _ in vals), all(m for _, m in vals)

    @property
    def tokens(self) -> float | None:
        vals = [t.run.generated_tokens for t in self.trainers]
        return sum(vals) if vals and all(v is not None for v in vals) else None

    @property
    def lost_gpu_s(self) -> float:
        return sum(t.lost_gpu_s for t in self.runs)

    @property
    def queued_s(self) -> float | None:
        q = [t.queued_s for t in self.runs if t.queued_s is not None]
        return sum(q) if q else None

    def per(self, what: str) -> float | None:
        denom = {"step": self.steps, "prompt": self.prompts[0], "token": self.tokens}[what]
        return self.gpu_s / denom if denom else None


@dataclass
class Comparison:
    separate_rl: Group     # the single-domain RL runs (the study's denominator)
    merges: Group
    separate: Group        # RL + merges
    mixed: Group
    opd: Group
    opd_teachers: Group    # MT-OPD plus the single-domain RL runs it distils from
    base: Group
    evals: Group           # eval runs: their own cost, in no arm
    others: list[Group]
    unattributed_gpu_s: float

    def ratio(self, num: Group, den: Group, what: str | None = None) -> float | None:
        if not num.runs or not den.runs:
            return None
        a, b = (num.gpu_s, den.gpu_s) if what is None else (num.per(what), den.per(what))
        return a / b if a is not None and b else None

    @property
    def groups(self) -> list[Group]:
        """Every group, in the order the cost summary lists them."""
        return [self.separate_rl, self.merges, self.separate, self.mixed, self.opd, self.opd_teachers, self.base,
                self.evals] + self.others

    @property
    def headline(self) -> float | None:
        return self.ratio(self.mixed, self.separate_rl)


def compare(ledger: Ledger) -> Comparison:
    by_arm: dict[str, list[RunTotals]] = {}
    for t in ledger.runs.values():
        by_arm.setdefault(t.run.arm, []).append(t)
    sep = by_arm.get("separate", [])
    rl = [t for t in sep if t.run.stage != "merge"]
    merges = [t for t in sep if t.run.stage == "merge"]
    others = [Group(a, a, ts) for a, ts in sorted(by_arm.items()) if a not in ARM_ORDER]
    return Comparison(
        separate_rl=Group("separate_rl", "separate: single-domain RL runs", rl),
        merges=Group("merge", "separate: merge jobs", merges),
        separate=Group("separate", "separate: RL + merge", sep),
        mixed=Group("mixed", "mixed: multi-task RL", by_arm.get("mixed", [])),
        opd=Group("opd", "MT-OPD alone", by_arm.get("opd", [])),
        opd_teachers=Group("opd_teachers", "MT-OPD + its teachers", by_arm.get("opd", []) + rl
                           if by_arm.get("opd") else []),
        base=Group("base", "base (SFT), shared by every arm", by_arm.get("base", [])),
        evals=Group("eval", "eval: benchmark runs, in no arm", by_arm.get("eval", [])),
        others=others,
        unattributed_gpu_s=sum(e.gpu_s for e in ledger.unattributed),
    )
