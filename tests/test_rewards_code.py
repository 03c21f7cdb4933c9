"""Code reward: the last code block, every test, the fraction passed."""

import pytest

from deps import requires
from m2rl.rewards import code

SPEC = {"tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"},
                  {"input": "-1 1\n", "output": "0\n"}], "time_limit_s": 5}
needs_bwrap = requires("bwrap")


def test_last_code_block():
    text = "```python\nprint(1)\n```\nbetter:\n```py\nprint(2)\n```\n```bash\nls\n```"
    assert code.last_code_block(text) == "print(2)\n"
    assert code.last_code_block("```\nprint(3)\n```") == "print(3)\n"
    assert code.last_code_block("no code here") is None


def test_outputs_match_ignores_whitespace_only():
    assert code.outputs_match("1 2\n3\n", "1 2 3")
    assert not code.outputs_match("1 2 4", "1 2 3")


def test_select_tests_is_capped_and_stable():
    tests = [{"input": str(i), "output": str(i)} for i in range(50)]
    a, b = code.select_tests(tests, 20, "task-1"), code.select_tests(tests, 20, "task-1")
    assert len(a) == 20 and a == b
    assert code.select_tests(tests[:5], 20, "x") == tests[:5]


@needs_bwrap
def test_all_pass_partial_and_none():
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    partial = "```python\na, b = map(int, input().split())\nprint(abs(a) + b)\n```"
    assert code.verify(right, SPEC) == (1.0, {"pass_fraction": 1.0, "n_tests": 3})
    reward, info = code.verify(partial, SPEC)
    assert reward == 0.0 and info["pass_fraction"] == pytest.approx(2 / 3)
    reward, info = code.verify("```python\nraise SystemExit(3)\n```", SPEC)
    assert reward == 0.0 and info["pass_fraction"] == 0.0
    assert code.verify("print(3)", SPEC)[1]["error"] == "no code block"
