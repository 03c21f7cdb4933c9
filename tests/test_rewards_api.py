"""The one reward API: routing per sample, the format rule, the reusable pool."""
import json

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
