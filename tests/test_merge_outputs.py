"""The merged output is an HF model dir that transformers (and vLLM) load and generate with."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

from deps import requires
from m2rl.jobs.merge import RECORD_NAME, merge
from m2rl.jobs.merge.synthetic import build_base, derive_task_model, write_model

DOMAINS = ["math", "code", "science", "if"]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    base = build_base(root / "base", "qwen3", vocab_size=512, hidden=64, seed=0)
    return base, {d: derive_task_model(base, root / d, seed=i + 1, scale=0.05) for i, d in enumerate(DOMAINS)}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    base = build_base(root / "base", "llama", vocab_size=512, hidden=64, seed=0)
    return base, {d: derive_task_model(base, root / d, seed=i + 1, scale=0.05) for i, d in enumerate(DOMAINS[:2])}


def _keys(d):
    keys = set()
    for f in d.glob("*.safetensors"):
        with safe_open(f, "pt") as sf:
            keys |= set(sf.keys())
    return keys


def _logits(path, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("fixture", ["qwen", "llama"])
def test_merged_model_loads_in_transformers_and_generates(request, tmp_path, fixture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, tasks = request.getfixturevalue(fixture)
    out = tmp_path / "ties"
    record = merge(base, tasks, out, "ties", "paper", shard_mb=0.3)
    assert record["shards"] > 1 and (out / "model.safetensors.index.json").is_file()
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", RECORD_NAME):
        assert (out / f).is_file(), f
    assert _keys(out) == _keys(base)  # tied: no lm_head in the files; untied: lm_head merged too
    assert ("lm_head.weight" in _keys(out)) == (fixture == "llama")
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = tok("w5 w17 w99 w3", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(gen[0]), str)
    # and the weights transformers loaded are the merged ones, tied head included
    sd = model.state_dict()
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    name = "model.layers.1.mlp.down_proj.weight"
    with safe_open(out / index[name], "pt") as f:
        assert torch.equal(sd[name], f.get_tensor(name))
    if fixture == "qwen":
        assert torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])


def test_one_task_model_at_lambda_one_reproduces_it(qwen, tmp_path):
    base, tasks = qwen
    merge(base, {"math": tasks["math"]}, tmp_path / "ta", "task_arithmetic")
    ids = torch.tensor([[5, 17, 99, 3, 8]])
    torch.testing.assert_close(_logits(tmp_path / "ta", ids), _logits(tasks["math"], ids), rtol=1e-5, atol=1e-5)


def test_bfloat16_output_loads_with_its_dtype(qwen, tmp_path):
    from transformers import AutoModelForCausalLM

    base, tasks = qwen
    merge(base, tasks, tmp_path / "bf16", "sce", dtype="bfloat16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert model.dtype == torch.bfloat16
    model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)


def test_record_names_the_recipe_and_hashes_the_inputs_independently_of_sharding(qwen, tmp_path):
    from safetensors.torch import load_file

    base, tasks = qwen
    resharded = write_model(tmp_path / "math2", load_file(tasks["math"] / "model.safetensors"),
                            json.loads((tasks["math"] / "config.json").read_text()), shards=3)
    r1 = merge(base, {"math": tasks["math"], "code": tasks["code"]}, tmp_path / "a", "dare_ties",
               weights=[1, 0.5], drop_p=0.3, seed=11)
    r2 = merge(base, {"math": resharded, "code": tasks["code"]}, tmp_path / "b", "dare_ties",
               weights=[1, 0.5], drop_p=0.3, seed=11)
    saved = json.loads((tmp_path / "a" / RECORD_NAME).read_text())
    assert saved["recipe"] == {"method": "dare_ties", "semantics": "paper", "lam": 1.0, "density": 0.2,
                               "trim_scope": "global", "drop_p": 0.3, "seed": 11, "dare_rescale": "1/(1-p)",
                               "normalize": False, "weights": {"math": 1.0, "code": 0.5}}
    assert saved["models"]["math"]["path"] == str(tasks["math"].absolute())
    assert r1["models"]["math"]["weights_xxh3_128"] == r2["models"]["math"]["weights_xxh3_128"]
    assert r1["models"]["math"]["weights_xxh3_128"] != r1["models"]["code"]["weights_xxh3_128"]
    assert r1["base"]["weights_xxh3_128"] != r1["models"]["math"]["weights_xxh3_128"]
    # same inputs and seed, whatever their sharding: the same merged bytes
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("method, semantics", [("dare_ties", "paper"), ("dare_ties", "mergekit"), ("ties", "mergekit"),
                                               ("sce", "mergekit")])
def test_reading_ahead_and_writing_behind_change_no_byte(qwen, tmp_path, method, semantics):
    # small chunks: the embeddings take several, each read ahead while the one before is merged
    base, tasks = qwen
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        merge(base, tasks, out, method, semantics, drop_p=0.3, seed=4, chunk_mb=0.25, threads=threads)
        outs.append((out / "model.safetensors").read_bytes())
    assert outs[0] == outs[1]


VLLM_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if __name__ == "__main__":
        import torch
        from transformers import AutoModelForCausalLM
        from vllm import LLM, SamplingParams
        path, prompt = sys.argv[1], [5, 17, 99, 3]
        llm = LLM(model=path, dtype="float32", max_model_len=128, enforce_eager=True)
        out = llm.generate([{"prompt_token_ids": prompt}], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None)
        print("VLLM", list(out[0].outputs[0].token_ids), "HF", want[0, 4:].tolist())
        assert list(out[0].outputs[0].token_ids) == want[0, 4:].tolist()
""")


@pytest.mark.vllm
@pytest.mark.slow
@requires("vllm")
def test_merged_model_loads_in_vllm(tmp_path):
    base = build_base(tmp_path / "base", "qwen3", vocab_size=512, hidden=128)  # vLLM's CPU attention: head_dim >= 32
    tasks = {d: derive_task_model(base, tmp_path / d, seed=i + 1, scale=0.05) for i, d in enumerate(DOMAINS)}
    merge(base, tasks, tmp_path / "ties", "ties", "mergekit", shard_mb=0.3)
    script = tmp_path / "check.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "ties")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
