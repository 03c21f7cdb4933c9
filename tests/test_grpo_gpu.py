"""GRPO's GPU paths, for a machine with CUDA (they skip elsewhere): `pytest -m gpu`.

* the learner on CUDA (DeepSpeed bf16, ZeRO-2 and ZeRO-3): full-weight gathers for the
  sync (tied head included), and the runtime's CPU-tensor collectives on its group;
* with the CUDA `vllm` package: a whole GRPO job with a learner task and a rollout task
  sharing one GPU (weights as safetensors bytes: NCCL refuses two ranks on one GPU);
* with two GPUs or more: the same job with the NCCL weight broadcast.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import launch

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

LEARNER_CHECK = r"""
import os, sys, json
import torch
from omegaconf import OmegaConf
from m2rl.jobs.grpo.config import GRPOConfig
from m2rl.rl.learner import Learner
from m2rl.weightsync.sender import BroadcastSender, param_meta, state_dict_bytes
from m2rl.models import ModelConfig, prepare_model
from m2rl.runtime.dist import any_rank
from m2rl.train.distributed import init_distributed
from safetensors.torch import load
init_distributed()
g = OmegaConf.structured(GRPOConfig)
g.engine.zero_stage = int(sys.argv[1])
path = prepare_model(ModelConfig())
learner = Learner(str(path), g, total_steps=2, seqs_per_rank=4, pad_id=0)
blob = state_dict_bytes(learner.engine)
meta = param_meta(learner.engine)
plan = BroadcastSender(None, 0, 1, False).bucket_plan(learner.engine, bucket_mb=1)
out = {"precision": learner.info.precision, "any_rank": any_rank(True), "plan": sum(len(b) for b in plan)}
if blob is not None:
    sd = load(blob)
    out.update(keys=len(sd), head=bool(torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])),
               dtype=str(sd["model.embed_tokens.weight"].dtype), meta=len(meta), device=str(learner.device))
print("RESULT", json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_learner_on_cuda_gathers_full_weights_for_the_sync(tmp_path, zero_stage):
    pytest.importorskip("deepspeed")
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    env.pop("SUBMITIT_EXECUTOR", None)
    proc = subprocess.run([sys.executable, "-c", LEARNER_CHECK, str(zero_stage)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["precision"] == "bf16" and out["device"].startswith("cuda") and out["any_rank"] is True
    assert out["head"] and out["dtype"] == "torch.bfloat16" and out["keys"] == out["meta"] == out["plan"]


def _job(tmp_path: Path, *extra: str) -> dict:
    pytest.importorskip("vllm")
    args = [f"paths.root={tmp_path}", "-m", "stage=grpo", "domain=math", "grpo.steps=3", "grpo.prompts_per_step=8",
            "grpo.group_size=4", "grpo.max_new_tokens=64", "grpo.eval_prompts=8", "grpo.enforce_eager=true", *extra]
    launch(*args, cwd=tmp_path, timeout=1200)
    run = tmp_path / "default" / "grpo" / "math"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {"done": json.loads((run / "DONE.json").read_text()), "train": [x for x in lines if x["kind"] == "train"]}


def test_grpo_job_learner_and_engine_share_one_gpu(tmp_path):
    out = _job(tmp_path, "cluster.gpus_per_node=1", "grpo.colocate=true", "grpo.gpu_memory_utilization=0.3")
    done, train = out["done"], out["train"]
    assert done["step"] == 3 and done["weight_sync"] == "bytes" and done["precision"] == "bf16"
    # after each sync the engine samples from the learner's weights: bf16 kernels differ a little
    assert all(abs(x["is/mean"] - 1) < 0.05 and x["kl/engine_vs_learner"] < 0.05 for x in train), train


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs the engine on a GPU of its own")
def test_grpo_job_with_the_nccl_weight_broadcast(tmp_path):
    out = _job(tmp_path, "cluster.gpus_per_node=2", "grpo.weight_sync=nccl")
    done, train = out["done"], out["train"]
    assert done["step"] == 3 and done["weight_sync"] == "nccl"
    assert all(abs(x["is/mean"] - 1) < 0.05 and x["kl/engine_vs_learner"] < 0.05 for x in train), train
