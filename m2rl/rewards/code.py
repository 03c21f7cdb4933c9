"""Code: the response's last Python code block, run against the task's stdin/stdout tests.

Each test is its own sandboxed run (`sandbox.run_python`); at most `max_tests` tests are
used (a fixed sample per task, as in the study: 20). Outputs match when their
whitespace-separated tokens are equal. Reward 1 only if every test passes; the fraction
passed goes to `info`. After a test times out the rest are counted failed without running
(an endless loop would otherwise cost the full limit on every test).
"""
from __future__ import annotations

import math
import random
import re

from m2rl.rewards.sandbox import Limits, run_python

_FENCE = re.compile(r"```([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3"}


def last_code_block(text: str) -> str | None:
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    return blocks[-1] if blocks else None


def outputs_match(got: str, expected: str) -> bool:
    return got.split() == expected.split()


def select_tests(tests: list[dict], max_tests: int, key: str) -> list[dict]:
    if len(tests) <= max_tests:
        return list(tests)
    return random.Random(key).sample(list(tests), max_tests)


def verify(answer_text: str, spec: dict, max_tests: int = 20, key: str = "") -> tuple[float, dict]:
    code = last_code_block(answer_text)
    if code is None:
        return 0.0, {"error": "no code block", "pass_fraction": 0.0}
    wall = float(spec.get("time_limit_s") or 10.0)
    limits = Limits(wall_s=wall, cpu_s=max(1, math.ceil(wall)), memory_mb=int(spec.get("memory_mb") or 4096))
    tests = select_tests(spec["tests"], max_tests, key)
    passed, first_error, skipped = 0, None, 0
    for n, test in enumerate(tests):
        res = run_python(code, test["input"], limits)
        ok = res.returncode == 0 and not res.output_capped and outputs_match(res.stdout, test["output"])
        passed += ok
        if not ok and first_error is None:
            first_error = "timeout" if res.timed_out else (res.stderr[-300:] or f"rc={res.returncode}")
        if res.timed_out:
            skipped = len(tests) - n - 1
            break
    frac = passed / len(tests) if tests else 0.0
    info = {"pass_fraction": frac, "n_tests": len(tests)}
    if first_error:
        info["error"] = first_error
    if skipped:
        info["skipped_after_timeout"] = skipped
    return float(bool(tests) and passed == len(tests)), info
