"""The one reward API: routing per sample, the format rule, the reusable pool."""
import json
import os
import re
import signal
import threading
import time

import pytest

from m2rl.rewards import RewardConfig, Scorer, score, close
from m2rl.rewards.format import split_think

MATH = {"id": "m", "domain": "math", "reward_spec": {"answer": "\\frac{1}{2}"}}
SCI = {"id": "s", "domain": "science", "reward_spec": json.dumps({"choices": ["a", "b", "c"], "answer": "B"})}
IF = {"id": "i", "domain": "if", "reward_spec": {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}], "prompt": ""}}
CODE = {"id": "c", "domain": "code", "reward_spec": {"tests": [{"input": "", "output": "7\n"}]}}


@pytest.mark.parametrize("response,ok,answer", [
    ("<think>a</think>b", True, "b"),
    ("plain answer", True, "plain answer"),
    ("<think>never closed", False, "<think>never closed"),
    ("</think>opened by the prompt", True, "opened by the prompt"),
    ("<think>a</think>b<think>again", False, "b<think>again"),
])
def test_split_think(response, ok, answer):
    assert split_think(response) == (ok, answer)


def test_require_think_is_the_study_rule():
    assert split_think("no think at all", require_think=True)[0] is False
    assert split_think("<think>x</think>y", require_think=True) == (True, "y")


@pytest.fixture(scope="module")
def scorer():
    with Scorer(workers=2) as s:
        yield s


def test_routes_each_sample_to_its_domain(scorer):
    samples = [MATH, SCI, IF, CODE, MATH, SCI]
    responses = ["\\boxed{0.5}", "The answer is (B). A", "no commas here",
                 "```python\nprint(7)\n```", "\\boxed{3}", "The answer is (C)"]
    results = scorer.score(samples, responses)
    assert [r.domain for r in results] == ["math", "science", "if", "code", "math", "science"]
    assert [r.reward for r in results] == [1, 1, 1, 1, 0, 0]
    assert results[0].info["format_ok"] and results[3].info["pass_fraction"] == 1.0


def test_unclosed_think_scores_zero_everywhere(scorer):
    good = ["\\boxed{0.5}", "(B)", "no commas", "```python\nprint(7)\n```"]
    results = scorer.score([MATH, SCI, IF, CODE], ["<think>" + g for g in good])
    assert all(r.reward == 0.0 and r.info["format_ok"] is False for r in results)
    # an answer inside the reasoning does not count either
    assert scorer.score([MATH], ["<think>\\boxed{0.5}</think> not sure"])[0].reward == 0.0


def test_pool_is_reused_and_large_batches_work(scorer):
    pool = scorer._get_pool()
    results = scorer.score([MATH, SCI, IF] * 40, ["\\boxed{1/2}", "B", "x"] * 40)
    assert scorer._pool is pool and sum(r.reward for r in results) == 120


def test_unknown_domain_is_a_zero_with_the_error(scorer):
    r = scorer.score([{"id": "a", "domain": "agent", "reward_spec": {}}], ["x"])[0]
    assert r.reward == 0.0 and "agent" in r.info["verifier_error"]


def test_inline_matches_pool(scorer):
    samples, responses = [MATH, SCI, IF], ["\\boxed{2}", "(B)", "a, b"]
    inline = Scorer(workers=0).score(samples, responses)
    assert [r.reward for r in inline] == [r.reward for r in scorer.score(samples, responses)]


def test_module_level_score():
    try:
        assert [r.reward for r in score([SCI], ["B"], workers=1)] == [1.0]
    finally:
        close()


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        Scorer(workers=0).score([MATH], [])


def test_config_is_used():
    strict = Scorer(workers=0, config=RewardConfig(require_think=True))
    assert strict.score([MATH], ["\\boxed{0.5}"])[0].reward == 0.0
    assert strict.score([MATH], ["<think>ok</think>\\boxed{0.5}"])[0].reward == 1.0


def _sigblk(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"SigBlk:\s*(\w+)", f.read()).group(1), 16)


def test_close_reaps_workers_deaf_to_sigterm_even_when_busy():
    """The workers block SIGTERM (a preemption notice is the job's, not theirs); a pool
    terminate sends SIGTERM and waited forever on such a worker (CI hung here)."""
    s = Scorer(workers=2)
    s._get_pool()
    pids = list(s._pool._processes)
    assert len(pids) == 2 and all(_sigblk(p) & (1 << (signal.SIGTERM - 1)) for p in pids)
    s._submit([(time.sleep, (600,))])
    time.sleep(0.5)
    closer = threading.Thread(target=s.close, daemon=True)
    t0 = time.monotonic()
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close() hung"
    assert time.monotonic() - t0 < 30 and s._pool is None
    for p in pids:
        assert not os.path.exists(f"/proc/{p}") or "State:\tZ" in open(f"/proc/{p}/status").read()


def test_a_worker_killed_mid_chunk_scores_zero_at_once_and_the_next_call_gets_a_fresh_pool():
    slow = {"id": "slow", "domain": "code",
            "reward_spec": {"tests": [{"input": "", "output": "7\n"}], "time_limit_s": 20}}
    with Scorer(workers=1) as s:
        s._get_pool()
        pid = next(iter(s._pool._processes))
        killer = threading.Timer(3.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        r = s.score([slow], ["```python\nimport time\ntime.sleep(15)\nprint(7)\n```"])[0]
        took = time.monotonic() - t0
        killer.join()
        assert r.reward == 0.0 and "verifier died" in r.info["verifier_error"]
        assert took < 12, f"waited {took:.0f} s for a dead worker"
        assert s._pool is None
        assert s.score([SCI], ["B"])[0].reward == 1.0 and next(iter(s._pool._processes)) != pid
