"""Is there a learning signal? Watches each step's groups and says so when there is not.

Two ways an RL run learns nothing while looking busy:
  - every group has equal rewards (all 0: the model never solves these prompts; all 1:
    it always does): every advantage is 0, the gradient is 0, steps go by;
  - the verifier fails (crashes, times out): those rewards are 0s that say nothing.
`SignalWatch` counts both, logs the first few verifier failures with their message, and
warns once per streak when `warn_after` consecutive steps had no non-zero advantage. Its
state rides in the run's checkpoint, and `summary()` goes into DONE.json, where the
report reads it.
"""
from __future__ import annotations

import logging

log = logging.getLogger("m2rl.rl")
MAX_LOGGED_ERRORS = 5


class SignalWatch:
    def __init__(self, warn_after: int, state: dict | None = None):
        self.warn_after = int(warn_after)
        self.s = {"steps": 0, "zero_advantage_steps": 0, "streak": 0, "longest_zero_streak": 0,
                  "completions": 0, "verifier_errors": 0, "logged_errors": 0, "warned": 0, **(state or {})}

    def state(self) -> dict:
        return dict(self.s)

    def observe(self, step: int, domain: str, zero_groups_frac: float, errors: list[tuple[str, str, str]],
                completions: int) -> None:
        s = self.s
        s["steps"] += 1
        s["completions"] += completions
        s["verifier_errors"] += len(errors)
        for dom, sid, msg in errors[:max(0, MAX_LOGGED_ERRORS - s["logged_errors"])]:
            s["logged_errors"] += 1
            log.warning("step %d: the %s verifier failed on sample %s (scored 0, no signal): %s", step, dom, sid, msg)
        if zero_groups_frac < 1.0:
            s["streak"] = 0
            return
        s["zero_advantage_steps"] += 1
        s["streak"] += 1
        s["longest_zero_streak"] = max(s["longest_zero_streak"], s["streak"])
        if self.warn_after and s["streak"] == self.warn_after:
            s["warned"] += 1
            log.warning(
                "%s: %d steps in a row (up to step %d) where every group's rollouts got the same reward, so every "
                "advantage and the whole gradient were 0: the model never (or always) solves these prompts. Start "
                "from an SFT checkpoint (grpo.init_from=<sft run>/export), use easier data, or sample bigger groups "
                "(grpo.group_size)", domain, s["streak"], step)

    def summary(self) -> dict:
        s = self.s
        return {"steps": s["steps"], "zero_advantage_steps": s["zero_advantage_steps"],
                "longest_zero_streak": s["longest_zero_streak"], "warned": s["warned"],
                "warn_after": self.warn_after,
                "verifier_error_frac": s["verifier_errors"] / s["completions"] if s["completions"] else 0.0}
