"""Per-step numbers: rewards per domain, the loss's statistics, and where the time went.

Time split of a step (driver's wall clock, checkpoint saves excluded):
  generate  the slowest rollout worker's engine time,
  reward    the slowest worker's verifier time,
  learn     the learners' forward/backward/optimizer time,
  sync      pushing the new weights to every engine.
A role's idle time is the step's wall time minus what that role was busy with: learners
are busy learning and syncing, rollout workers generating, rewarding and loading weights.
Synchronous GRPO leaves learners idle while engines generate and vice versa; these
fractions are what the GPU-hour report uses to explain where the hours go.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

PASS = 1.0 - 1e-6  # a rollout "passes" when its reward is full


def rollout_metrics(samples: list[dict], groups: list[list[dict]]) -> dict[str, float]:
    per: dict[str, list] = defaultdict(list)
    rows = []
    zero_groups = 0
    for sample, group in zip(samples, groups):
        rewards = [c["reward"] for c in group]
        zero_groups += int(max(rewards) == min(rewards))
        for c in group:
            row = (c["reward"], len(c["ids"]), c.get("finish") == "length", c.get("format_ok", True),
                   "verifier_error" in c)
            rows.append(row)
            per[sample["domain"]].append(row)
    out = _summary(rows, "")
    out["advantage/zero_groups_frac"] = zero_groups / max(1, len(groups))
    for dom, drows in per.items():
        out.update(_summary(drows, f"/{dom}"))
    return out


def _summary(rows: list[tuple], suffix: str) -> dict[str, float]:
    n = max(1, len(rows))
    return {
        f"reward/mean{suffix}": sum(r[0] for r in rows) / n,
        f"reward/pass_rate{suffix}": sum(r[0] >= PASS for r in rows) / n,
        f"response/length{suffix}": sum(r[1] for r in rows) / n,
        f"response/truncated_frac{suffix}": sum(r[2] for r in rows) / n,
        f"response/format_ok_frac{suffix}": sum(r[3] for r in rows) / n,
        # rewards the verifier could not give (it crashed or timed out): 0s that say nothing
        f"reward/error_frac{suffix}": sum(r[4] for r in rows) / n,
    }


def verifier_errors(samples: list[dict], groups: list[list[dict]]) -> list[tuple[str, str, str]]:
    """(domain, sample id, message) of every completion the verifier failed on."""
    return [(s["domain"], str(s.get("id", "?")), c["verifier_error"])
            for s, group in zip(samples, groups) for c in group if "verifier_error" in c]


def learner_metrics(stats: dict[str, float]) -> dict[str, float]:
    n = max(1.0, stats.get("tokens", 0.0))
    out = {
        "loss/policy": stats.get("loss_sum", 0.0) / n,
        "loss/clip_frac": stats.get("clipped", 0.0) / n,
        "loss/ratio_mean": stats.get("ratio_sum", n) / n,
        "entropy": stats.get("entropy_sum", 0.0) / n,
    }
    if "is_sum" in stats:
        out.update({"is/mean": stats["is_sum"] / n, "is/max": stats["is_max"], "is/min": stats["is_min"],
                    "kl/engine_vs_learner": stats["kl_engine_sum"] / n})
        if "is_truncated" in stats:
            out["is/truncated_frac"] = stats["is_truncated"] / n
    if "kl_ref_sum" in stats:
        out["kl/ref"] = stats["kl_ref_sum"] / n
    for k in ("lr", "grad_norm"):
        if k in stats:
            out[f"optim/{k}"] = stats[k]
    return out


def time_metrics(step_s: float, gen_wall_s: float, workers: list[dict], load_s: list[float], learn_s: float,
                 sync_s: float, generated: int, trained: int) -> dict[str, float]:
    gen = max((w["generate_s"] for w in workers), default=0.0)
    rew = max((w["reward_s"] for w in workers), default=0.0)
    busy = [w["generate_s"] + w["reward_s"] + (load_s[i] if i < len(load_s) else 0.0) for i, w in enumerate(workers)]
    step = max(step_s, 1e-9)
    return {
        "time/step": step_s, "time/generate": gen, "time/reward": rew, "time/rollout_wall": gen_wall_s,
        "time/learn": learn_s, "time/sync": sync_s,
        "throughput/rollout_tokens_per_s": generated / max(gen_wall_s, 1e-9),
        "throughput/learn_tokens_per_s": trained / max(learn_s, 1e-9),
        "idle/learner_frac": max(0.0, 1.0 - (learn_s + sync_s) / step),
        "idle/rollout_frac": max(0.0, 1.0 - (sum(busy) / max(1, len(busy))) / step),
    }


class MetricsLog:
    """TensorBoard scalars (through m2rl.train's TrainLogger) and a JSON line per step
    (`metrics.jsonl`, for the GPU-hour report). Driver only."""

    def __init__(self, run_dir: Path, tb_dir: Path, total_steps: int, start_step: int, log_every: int):
        from m2rl.train.progress import TrainLogger

        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = TrainLogger(tb_dir, total_steps, prefix="grpo", log_every=log_every,
                              initial_step=start_step + 1 if start_step else 0)
        if start_step and self.path.is_file():  # drop lines of steps a preempted attempt did not save
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            self.path.write_text("".join(k + "\n" for k in keep))

    def step(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        """TensorBoard tags `grpo/<name>` (`eval/<name>` for held-out evals)."""
        self.tb.log(step, values, section="grpo" if kind == "train" else kind)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")

    def close(self) -> None:
        self.tb.close()
