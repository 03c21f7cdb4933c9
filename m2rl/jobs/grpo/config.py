"""The `grpo:` section of a run. Kept free of heavy imports: the launcher imports it to
build the Hydra schema. Defaults are the study's settings (128 prompts x 16 rollouts,
clip 0.2/0.28, truncated importance sampling on, KL coefficient 0, Adam lr 2e-6 constant,
weight decay 0.1, betas 0.9/0.98); configs/stage/grpo.yaml shrinks them for this machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from m2rl.train.config import EngineConfig, OptimConfig
from m2rl.weightsync import METHODS as WEIGHT_SYNCS  # noqa: F401  (validated in __init__)

ADVANTAGES = ("grpo", "drgrpo")  # drgrpo: no std normalisation (Dr. GRPO)
LOSS_AGGS = ("token_mean", "seq_sum_norm")  # seq_sum_norm: token sums / (seqs * max_new_tokens)


def _study_optim() -> OptimConfig:
    return OptimConfig(lr=2e-6, schedule="constant", warmup_steps=0, weight_decay=0.1, betas=[0.9, 0.98])


@dataclass
class GRPOConfig:
    """GRPO: vLLM rollout workers sample groups, verifiers reward them, a DeepSpeed
    learner takes one clipped policy-gradient step per batch, weights go back to the
    workers before the next batch."""

    steps: int = 200  # optimizer steps (= rollout batches with mini_batches=1)
    prompts_per_step: int = 128
    group_size: int = 16  # rollouts per prompt
    # sampling (the rollout engines)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_prompt_tokens: int = 2048  # longer prompts are cut from the left
    max_new_tokens: int = 32768
    # advantages and loss
    advantage: str = "grpo"  # grpo: (r - mean) / std per group; drgrpo: r - mean
    loss_agg: str = "token_mean"  # token_mean: mean over every response token of the batch
    clip_low: float = 0.2
    clip_high: float = 0.28
    tis: bool = True  # truncated importance sampling: min(p_learner / p_engine, tis_cap)
    tis_cap: float = 2.0
    kl_coef: float = 0.0  # low-variance (k3) KL to the initial policy; 0 = no reference model
    # optimizer steps per rollout batch (the study: 1). With 1, the PPO ratio is exactly 1
    # (the learner's own policy is the proximal one), so the clip (clip_low/clip_high)
    # never acts: only truncated importance sampling (tis) corrects the engine/learner gap.
    # The clip matters from mini_batches=2 on.
    mini_batches: int = 1
    # skip the forward/backward of rollouts whose advantage is 0 (groups with equal rewards):
    # the same gradient for less compute (applies with mini_batches=1 and kl_coef=0)
    skip_zero_advantage: bool = True
    # rollouts are generated with weights at most this many steps old. 0 = synchronous
    # (the study); 1 overlaps generating batch k+1 with learning on batch k.
    max_staleness: int = 0
    # roles: the allocation's tasks are split into learners and rollout workers
    rollout_workers: int = 1  # vLLM engines (each one task); the other tasks are learners
    tensor_parallel_size: int = 1  # GPUs per engine
    gpu_memory_utilization: float = 0.85  # vLLM's share of its GPU(s)
    # a learner and an engine on one GPU (one task, or fewer GPUs than learners + engines):
    # refused unless asked for here, and then vLLM's share must leave room for the learner
    colocate: bool = False
    cpu_kv_cache_gb: int = 1  # vLLM on CPU: KV cache size (VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = False  # vLLM: no CUDA graphs / compile
    weight_sync: str = "auto"  # auto: nccl between separate GPUs, else safetensors bytes
    reward_workers: int = 2  # verifier processes per rollout worker (0 = inline)
    require_think: bool = False  # the study's strict format rule: no </think> scores 0
    # start and end
    # sft/multi (a run of this experiment: its export), an HF dir or a hub id; None = the
    # model config's raw model (the job logs that as a warning: RL from a raw model rarely learns)
    init_from: Optional[str] = None
    export: bool = True  # write the final model to <run_dir>/export/
    # held-out evaluation: `eval_prompts` eval-split prompts at the start, every
    # `eval_every` steps (0 = only start and end) and at the end; eval_samples=1 scores
    # the greedy answer, more scores that many samples each at the training temperature
    eval_prompts: int = 0
    eval_every: int = 0
    eval_samples: int = 1
    log_every: int = 1
    # warn when this many consecutive steps had every group's rewards equal (zero advantage
    # everywhere: nothing to learn); 0 = never. The count is in DONE.json and the report.
    warn_zero_advantage_steps: int = 5
    # learner memory: response tokens per output-head chunk (fp32 logits of one chunk at a time)
    logprob_chunk_tokens: int = 2048
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(zero_stage=2, micro_batch_size=8))
    optim: OptimConfig = field(default_factory=_study_optim)
