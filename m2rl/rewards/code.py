"""Code: the response's last Python code block, run against the task's stdin/stdout tests.

Each test is its own sandboxed run (`sandbox.run_python`); at most `max_tests` tests are
used (a fixed sample per task, as in the study: 20). Outputs match when their
whitespace-separated tokens are equal. Reward 1 only if every test passes; the fraction
passed goes to `info`. After a test times out the rest are counted failed without running
(an endless loop would otherwise cost the full limit on every test). Specs with
`harness: check` (HumanEval) or `fn_name` (LeetCode-style calls) are judged by
`code_call`.
"""
from __future__ import annotations

import random
import re

from m2rl.rewards import code_call

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
    if spec.get("harness") == "check":  # HumanEval: prompt + code + test + check()
        return code_call.verify_check(code, answer_text, spec)
    if code is None:
        return 0.0, {"error": "no code block", "pass_fraction": 0.0}
    tests = select_tests(spec["tests"], max_tests, key)
    if spec.get("fn_name"):  # LeetCode-style: call Solution().<fn_name>
        return code_call.verify_functional(code, tests, spec)
    return code_call.run_tests(code, tests, code_call.limits_for(spec), outputs_match)
