"""Code judged by calling it: HumanEval-style check programs and LeetCode-style tests.

* `check` harness (HumanEval): the program is the problem's prompt, then the response's
  last Python code block (a full function, or just its body), or, with no block, the
  response itself as the continuation of the prompt; then the problem's `test` code and
  `check(<entry_point>)`. Reward 1 when that program exits 0 within the time limit, in
  the sandbox (`sandbox.run_python`): never `exec` in this process.
* functional tests (LiveCodeBench's LeetCode problems, `fn_name` in the spec): each
  test's input is one JSON value per line, the arguments of `Solution().<fn_name>`; the
  printed JSON of its return value must equal the test's JSON output. Each test is its own
  sandboxed run; reward 1 only if all pass (the rest are skipped after a timeout).
"""
from __future__ import annotations

import json
import math
from typing import Callable

from m2rl.rewards.sandbox import Limits, run_python

# What LeetCode solutions assume is already imported (typing names, collections, ...).
PRELUDE = ("from typing import *\nfrom collections import *\nfrom functools import *\n"
           "from itertools import *\nfrom heapq import *\nfrom bisect import *\nimport math\n"
           "import string\nimport re\n")

_CALL = """
import json as _json, sys as _sys
_args = [_json.loads(_l) for _l in _sys.stdin.read().split("\\n") if _l.strip()]
print(_json.dumps(Solution().{fn}(*_args)))
"""


def limits_for(spec: dict, default_s: float = 10.0) -> Limits:
    wall = float(spec.get("time_limit_s") or default_s)
    return Limits(wall_s=wall, cpu_s=max(1, math.ceil(wall)), memory_mb=int(spec.get("memory_mb") or 4096))


def check_program(code: str | None, answer_text: str, spec: dict) -> str:
    body = code if code is not None else answer_text
    return f"{spec['prompt']}\n{body}\n\n{spec['test']}\n\ncheck({spec['entry_point']})\n"


def verify_check(code: str | None, answer_text: str, spec: dict) -> tuple[float, dict]:
    res = run_python(check_program(code, answer_text, spec), "", limits_for(spec))
    ok = res.returncode == 0 and not res.timed_out
    info = {"pass_fraction": float(ok), "n_tests": 1, "from_code_block": code is not None}
    if not ok:
        info["error"] = "timeout" if res.timed_out else (res.stderr[-300:] or f"rc={res.returncode}")
    return float(ok), info


def _same_json(got: str, expected: str) -> bool:
    try:
        return json.loads(got) == json.loads(expected)
    except ValueError:
        return False


def run_tests(program: str, tests: list[dict], limits: Limits,
              match: Callable[[str, str], bool]) -> tuple[float, dict]:
    """Run `program` once per test (its input on stdin); reward 1 only if every output
    matches; after a timeout the rest are counted failed without running."""
    passed, first_error, skipped = 0, None, 0
    for n, test in enumerate(tests):
        res = run_python(program, test["input"], limits)
        ok = res.returncode == 0 and not res.output_capped and match(res.stdout, test["output"])
        passed += ok
        if not ok and first_error is None:
            first_error = "timeout" if res.timed_out else (res.stderr[-300:] or f"rc={res.returncode}")
        if res.timed_out:
            skipped = len(tests) - n - 1
            break
    info = {"pass_fraction": passed / len(tests) if tests else 0.0, "n_tests": len(tests)}
    if first_error:
        info["error"] = first_error
    if skipped:
        info["skipped_after_timeout"] = skipped
    return float(bool(tests) and passed == len(tests)), info


def verify_functional(code: str, tests: list[dict], spec: dict) -> tuple[float, dict]:
    return run_tests(PRELUDE + code + _CALL.format(fn=spec["fn_name"]), tests, limits_for(spec), _same_json)
