"""Data: generators (deterministic, disjoint splits), the schema, multi mixing, SFT, the blend."""
import collections
import json

import pytest

from m2rl.data import DataConfig, load_rl_dataset, load_sft_dataset, to_sample
from m2rl.data import blend
from m2rl.data.generators import generate
from m2rl.rewards import Scorer

DOMAINS = ["math", "code", "science", "if"]


@pytest.mark.parametrize("domain", DOMAINS)
def test_generators_are_deterministic_and_splits_disjoint(domain):
    a = generate(domain, "train", 60, seed=3)
    assert a == generate(domain, "train", 60, seed=3)
    assert a != generate(domain, "train", 60, seed=4)
    ev = generate(domain, "eval", 30, seed=3)
    ev_other_seed = generate(domain, "eval", 30, seed=4)
    train_keys = {t["key"] for t in a} | {t["key"] for t in generate(domain, "train", 60, seed=4)}
    assert not train_keys & ({t["key"] for t in ev} | {t["key"] for t in ev_other_seed})
    assert len({t["key"] for t in a}) == 60


@pytest.mark.parametrize("domain", DOMAINS)
def test_rl_dataset_schema(domain):
    ds = load_rl_dataset(domain, DataConfig(n_train=12, n_eval=4), "train")
    assert len(ds) == 12 and set(ds.column_names) == {"id", "domain", "messages", "reward_spec", "source"}
    s = to_sample(ds[0])
    assert s["domain"] == domain and s["messages"][0]["role"] == "user" and isinstance(s["reward_spec"], dict)
    assert len(set(ds["id"])) == 12


def test_multi_natural_and_configured_mix():
    cfg = DataConfig(n_train=80, n_eval=8, seed=1)
    ds = load_rl_dataset("multi", cfg, "train")
    counts = collections.Counter(ds["domain"])
    assert len(ds) == 80 and set(counts) == set(DOMAINS)
    mixed = load_rl_dataset("multi", DataConfig(n_train=80, seed=1, mix={"math": 3, "code": 1}), "train")
    assert collections.Counter(mixed["domain"]) == {"math": 60, "code": 20}
    assert mixed["domain"] != sorted(mixed["domain"])  # shuffled
    assert load_rl_dataset("multi", cfg, "train")["id"] == ds["id"]  # deterministic
    with pytest.raises(ValueError):
        load_rl_dataset("multi", DataConfig(mix={"poetry": 1.0}), "train")


def test_sft_responses_pass_their_own_verifier():
    cfg = DataConfig(n_train=6, n_eval=3, seed=2)
    ds = load_sft_dataset("multi", DataConfig(n_train=24, seed=2), "train")
    assert "response" in ds.column_names and all(ds["response"])
    samples = [to_sample(r) for r in ds]
    results = Scorer(workers=0).score(samples, [s["response"] for s in samples])
    assert [r.reward for r in results] == [1.0] * len(samples), [r.info for r in results if r.reward < 1]
    assert len(load_sft_dataset("if", cfg, "eval")) == 3


BLEND_ROWS = [
    {"dataset": "nano_v3_dapo17k", "uuid": "m1", "expected_answer": "42",
     "responses_create_params": {"input": [{"role": "user", "content": "What is 6*7?"}]}},
    {"dataset": "skywork_math", "uuid": "m2", "expected_answer": "\\frac{1}{2}",
     "responses_create_params": {"input": [{"role": "user", "content": "Half?"}]}},
    {"dataset": "stem_mcqa", "uuid": "s1", "expected_answer": "B",
     "options": [{"A": "Karyotyping"}, {"B": "PCR"}, {"C": "ELISA"}],
     "responses_create_params": {"input": [{"role": "user", "content": "Which test?\nA: ...\nB: ..."}]}},
    {"dataset": "instruction_following", "uuid": "i1", "prompt": "Write without commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"num_words": None}],
     "responses_create_params": {"input": [{"role": "user", "content": "Write without commas."}]}},
    {"dataset": "instruction_following", "uuid": "i2", "prompt": "x",
     "instruction_id_list": ["keywords:start_end"], "kwargs": [{}],  # not an IFEval checker: dropped
     "responses_create_params": {"input": [{"role": "user", "content": "x"}]}},
    {"dataset": "comp_coding_50tests", "uuid": "c1",
     "verifier_metadata": {"unit_tests": {"inputs": ["1 2\n"], "outputs": ["3\n"]}},
     "responses_create_params": {"instructions": "You are a coder.",
                                 "input": [{"role": "user", "content": [{"type": "input_text", "text": "Add."}]}]}},
    {"dataset": "workbench", "uuid": "a1", "responses_create_params": {"input": [{"role": "user", "content": "tool"}]}},
]


@pytest.fixture
def blend_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in BLEND_ROWS) + "\n")
    return path


def test_blend_rows_convert_per_domain(blend_file):
    groups = blend.load_blend(str(blend_file))
    assert {d: len(v) for d, v in groups.items()} == {"math": 2, "science": 1, "if": 1, "code": 1}
    sci = groups["science"][0]
    assert sci["reward_spec"] == {"choices": ["Karyotyping", "PCR", "ELISA"], "answer": "B"}
    code = groups["code"][0]
    assert code["messages"] == [{"role": "system", "content": "You are a coder."}, {"role": "user", "content": "Add."}]
    assert code["reward_spec"]["tests"] == [{"input": "1 2\n", "output": "3\n"}]
    assert groups["if"][0]["reward_spec"]["kwargs"] == [{}]


def test_blend_through_the_loader_and_rewards(blend_file, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for source in (blend_file, tmp_path / "train.parquet"):
        if source.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist([{k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                                  for k, v in r.items()} for r in BLEND_ROWS[:2]]), source)
        cfg = DataConfig(source=str(source), n_train=None, n_eval=1, seed=0)
        tr, ev = load_rl_dataset("math", cfg, "train"), load_rl_dataset("math", cfg, "eval")
        assert len(tr) == 1 and len(ev) == 1 and set(tr["id"]).isdisjoint(ev["id"])
    cfg = DataConfig(source=str(blend_file), n_train=None, n_eval=0)
    multi = load_rl_dataset("multi", cfg, "train")
    assert collections.Counter(multi["domain"]) == {"math": 2, "science": 1, "if": 1, "code": 1}
    samples = [to_sample(r) for r in multi]
    answers = {"math": "\\boxed{42}", "science": "The answer is (B).", "if": "no commas", "code": "x"}
    rewards = Scorer(workers=0).score(samples, [answers[s["domain"]] for s in samples])
    assert [r.domain for r in rewards] == multi["domain"]
    assert sum(r.reward for r in rewards) == 3  # math "42" right, "1/2" wrong; mcq; if
