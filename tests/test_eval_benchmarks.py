"""The benchmark registry: every benchmark loads (the offline five from their packages,
with their published item counts; the others from small files in their published
format), gold responses score 1.0 and wrong ones 0.0 through the project's verifiers, and
IFBench's checkers run with no network and agree with the package's own evaluation_lib."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deps import requires
from m2rl.eval import BENCHMARKS, get, load, reward_config, sampling, score, score_many
from m2rl.eval.instruction_sets import ifbench_file
from m2rl.rewards import Scorer

FIX = Path(__file__).parent / "fixtures" / "eval"
RESPONSES = json.loads((FIX / "responses.json").read_text())
OFFLINE_COUNTS = {"aime24": 30, "aime25": 15, "math500": 311, "humaneval": 164, "ifbench": 294,
                  "heldout_math": 100, "heldout_code": 100, "heldout_science": 100, "heldout_if": 100}
FILES = {"gpqa_diamond": "gpqa_diamond.csv", "ifeval": "ifeval.jsonl", "mmlu_redux": "mmlu_redux.jsonl",
         "lcb_v5": "lcb.jsonl", "lcb_v6": "lcb.jsonl", "hle": "hle.jsonl"}
FILE_COUNTS = {"gpqa_diamond": 3, "ifeval": 3, "mmlu_redux": 3, "lcb_v5": 2, "lcb_v6": 1, "hle": 3}


@pytest.fixture(scope="module")
def scorer():
    with Scorer(workers=2, config=reward_config()) as s:
        yield s


def test_registry_covers_the_study_and_its_defaults():
    assert set(BENCHMARKS) == set(OFFLINE_COUNTS) | set(FILES)
    assert {n for n, b in BENCHMARKS.items() if b.offline} == set(OFFLINE_COUNTS)
    assert (sampling("aime24").n, sampling("gpqa_diamond").n, sampling("ifbench").n) == (16, 4, 1)
    for name, b in BENCHMARKS.items():
        assert (b.sampling.temperature, b.sampling.top_p, b.sampling.max_tokens) == (1.0, 0.7, 32768)
        assert b.rule and b.loader.__module__.startswith("m2rl.eval."), name  # the rule, beside the loader
    assert sampling("aime24", n=4).n == 4
    with pytest.raises(ValueError, match="top_k"):
        sampling("aime24", top_k=5)
    with pytest.raises(KeyError, match="known: aime24"):
        get("aime26")


@pytest.mark.parametrize("name", sorted(OFFLINE_COUNTS))
def test_offline_benchmark_loads_with_its_count(name):
    items = load(name)
    assert len(items) == OFFLINE_COUNTS[name]
    assert len({i.id for i in items}) == len(items)
    assert all(i.domain == get(name).domain and i.prompt and i.reward_spec for i in items)


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_benchmark_loads_from_the_published_format(name):
    items = load(name, str(FIX / FILES[name]))
    assert len(items) == FILE_COUNTS[name]
    assert all(i.id.startswith(name + "/") and i.prompt for i in items)


def _gold_and_wrong(name, items):
    if name in ("ifeval", "lcb_v5", "lcb_v6"):
        return [RESPONSES[i.id]["gold"] for i in items], [RESPONSES[i.id]["wrong"] for i in items]
    gold = [get(name).gold(i) for i in items]
    if get(name).domain == "science" or "choices" in items[0].reward_spec:
        def other(i):
            return "A" if i.reward_spec["answer"] != "A" else "B"
        wrong = [gold_text.replace(f"Answer: {i.reward_spec['answer']}", f"Answer: {other(i)}")
                 .replace(f"\\boxed{{{i.reward_spec['answer']}}}", f"\\boxed{{{other(i)}}}")
                 for gold_text, i in zip(gold, items)]
    elif name == "heldout_code":
        wrong = ["```python\nprint('no')\n```"] * len(items)
    elif name == "heldout_if":  # free-text constraints: a one-word answer breaks most, not all
        wrong = None
    elif name == "humaneval":
        wrong = [f"```python\n{i.reward_spec['prompt']}    raise NotImplementedError\n```" for i in items]
    else:
        wrong = ["Explanation: a guess.\nAnswer: 123456789\nThe final answer is $\\boxed{123456789}$."] * len(items)
    return gold, wrong


@pytest.mark.parametrize("name", sorted(set(BENCHMARKS) - {"ifbench"}))
def test_gold_scores_one_and_wrong_zero(name, scorer):
    items = load(name, str(FIX / FILES[name])) if name in FILES else load(name)
    gold, wrong = _gold_and_wrong(name, items)
    got = score_many(items, gold, scorer=scorer)
    assert [i.id for i, (r, _) in zip(items, got) if r != 1.0] == [], [info for r, info in got if r != 1.0][:3]
    if wrong is None:
        return
    got = score_many(items, wrong, scorer=scorer)
    assert [i.id for i, (r, _) in zip(items, got) if r != 0.0] == []


def test_ifbench_sample_outputs_score_as_the_package_says_and_wrong_ones_zero(scorer):
    """IFBench has no gold responses: its shipped sample_output's are the reference."""
    items = load("ifbench")
    resp = {json.loads(x)["prompt"]: json.loads(x)["response"] for x in open(ifbench_file("sample_output.jsonl"))}
    got = score_many(items, [resp[i.prompt] for i in items], scorer=scorer)
    passed = [i for i, (r, _) in zip(items, got) if r == 1.0]
    assert 0 < len(passed) < len(items)
    assert all(r == 0.0 for r, _ in score_many(passed, [""] * len(passed), scorer=scorer))


def test_think_rule_is_a_flag():
    item = load("aime24")[0]
    answer = "\\boxed{204}"
    assert score(item, answer)[0] == 1.0
    assert score(item, "<think>" + answer)[0] == 0.0                      # left open
    assert score(item, "<think>x</think>" + answer, require_think=True)[0] == 1.0
    assert score(item, answer, require_think=True)[0] == 0.0              # the study's strict rule


def test_bad_file_names_the_missing_field(tmp_path):
    bad = tmp_path / "gpqa.csv"
    bad.write_text("Question,Correct Answer\nq,a\n")
    with pytest.raises(ValueError, match="Incorrect Answer 1"):
        load("gpqa_diamond", str(bad))
    with pytest.raises(FileNotFoundError, match="not a hub id"):
        load("ifeval", str(tmp_path / "missing.jsonl"))


_OURS = """
import json
from m2rl.eval import load, score_many
from m2rl.eval.instruction_sets import ifbench_file
items = load("ifbench")
resp = {json.loads(x)["prompt"]: json.loads(x)["response"] for x in open(ifbench_file("sample_output.jsonl"))}
res = score_many(items, [resp[i.prompt] for i in items])
print(json.dumps({i.prompt: [info["followed"], info["loose_followed"]] for i, (r, info) in zip(items, res)}))
"""
# The package's own evaluation, strict then loose on the same inputs as its run_eval.py does.
_ORACLE = """
import json, sys
import ifbench.evaluation_lib as ev
inputs = ev.read_prompt_list(sys.argv[1])
p2r = ev.read_prompt_to_response_dict(sys.argv[2])
strict = [ev.test_instruction_following_strict(i, p2r) for i in inputs]
loose = [ev.test_instruction_following_loose(i, p2r) for i in inputs]
print(json.dumps({s.prompt: [s.follow_instruction_list, l.follow_instruction_list] for s, l in zip(strict, loose)}))
"""


def _netless(code: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    """`python -c code` in a new network namespace (no interface but loopback)."""
    user = [] if os.geteuid() == 0 else ["--unshare-user"]
    argv = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", *user, "--", sys.executable, "-c", code, *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


@requires("bwrap")
def test_ifbench_checkers_run_offline_and_agree_with_its_evaluation_lib(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    env.update(M2RL_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path))
    ours = _netless(_OURS, env=env)
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert "Error loading" not in ours.stderr and "Downloading" not in ours.stderr
    # The oracle needs the same NLTK data (built above, offline) and, for its import-time
    # `spacy.cli.download("en_core_web_sm")` (a pip install of a model no checker loads),
    # a spacy.cli whose download does nothing; its nltk.download calls fail offline.
    stub = tmp_path / "stub" / "spacy"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "cli.py").write_text("def download(*args, **kwargs):\n    pass\n")
    data = Path(ifbench_file()).parent
    env.update(NLTK_DATA=str(tmp_path / "cache" / "nltk_data"), PYTHONPATH=str(stub.parent))
    oracle = _netless(_ORACLE, str(data / "IFBench_test.jsonl"), str(data / "sample_output.jsonl"), env=env)
    assert oracle.returncode == 0, oracle.stderr[-3000:]
    a, b = json.loads(ours.stdout), json.loads(oracle.stdout)
    assert len(a) == len(b) == 294
    assert [k[:80] for k in a if a[k] != b[k]] == []


def test_loose_counts_a_preamble_line_strict_does_not():
    item = next(i for i in load("ifeval", str(FIX / "ifeval.jsonl")) if i.id == "ifeval/1003")
    reward, info = score(item, 'Sure!\n"Apple and banana. Is there anything else I can help with?"')
    assert (reward, info["strict"], info["loose"]) == (0.0, 0.0, 1.0)


def test_hle_exact_answers_by_text_or_math():
    items = {i.id: i for i in load("hle", str(FIX / "hle.jsonl"))}
    prime, city = items["hle/6687ffb1091058ff19128813"], items["hle/66e8d4736299517dd7a5da8c"]
    assert score(prime, "Explanation: 91 = 7*13.\nExact Answer: $97.0$\nConfidence: 80%")[0] == 1.0
    assert score(city, "Explanation: 1896.\n**Answer:** athens.\nConfidence: 99%")[0] == 1.0
    assert score(city, "Athens, I think.")[0] == 0.0  # no "Answer:" line: nothing to read


def test_parquet_and_gzip_files_load_like_jsonl(tmp_path):
    """The hub serves HLE, MMLU-Redux and IFEval as parquet: a local copy of one loads too."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIX / "hle.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hle.parquet")
    (tmp_path / "hle.jsonl.gz").write_bytes(gzip.compress((FIX / "hle.jsonl").read_bytes()))
    want = [i.id for i in load("hle", str(FIX / "hle.jsonl"))]
    assert [i.id for i in load("hle", str(tmp_path / "hle.parquet"))] == want
    assert [i.id for i in load("hle", str(tmp_path / "hle.jsonl.gz"))] == want
