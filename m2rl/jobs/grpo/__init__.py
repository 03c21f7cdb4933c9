"""`stage=grpo`: a DeepSpeed learner and vLLM rollout workers in one Slurm allocation,
rewarded by the domain verifiers, resumable across preemption.

Here: `config` (the `grpo:` section) and `loop` (the body, `run`). The pieces it is built
from are shared with the other stages: m2rl.roles (who does what), m2rl.rollout (vLLM
engines, verifiers, the driver <-> worker channel), m2rl.weightsync (learner -> engine
weight updates), m2rl.rl (loss, learner, metrics, prompt sampler). This module stays
light: the launcher imports it to build the config schema.
"""
from __future__ import annotations

from m2rl.jobs.grpo.config import ADVANTAGES, LOSS_AGGS, WEIGHT_SYNCS, GRPOConfig
from m2rl.stage import Layout, Stage

__all__ = ["GRPOConfig", "STAGE", "run", "validate", "roles"]


def run(ctx):
    from m2rl.jobs.grpo.loop import run as _run

    return _run(ctx)


def roles(cfg, layout: Layout) -> list:
    """The role of every task of the allocation (m2rl.roles.role_plan)."""
    from m2rl.roles import role_plan

    g = cfg.grpo
    return role_plan(layout.tasks, layout.nodes, layout.gpus_per_node, int(g.rollout_workers),
                     int(g.tensor_parallel_size))


def validate(cfg, layout: Layout) -> None:
    from omegaconf import OmegaConf

    from m2rl.errors import ConfigError, RoleError
    from m2rl.sections import resolve_init
    from m2rl.train.config import OPTIMIZERS, PRECISIONS, SCHEDULES

    g = cfg.grpo

    def check(ok: bool, field: str, problem: str, fix: str) -> None:
        if not ok:
            raise ConfigError(f"grpo.{field}", problem, fix)

    for key in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "max_prompt_tokens", "mini_batches",
                "tensor_parallel_size", "log_every", "eval_samples"):
        check(g[key] >= 1, key, f"must be >= 1, got {g[key]}", f"set grpo.{key} to a positive number")
    check(g.group_size >= 2, "group_size", "GRPO compares rollouts within a group: one rollout has no advantage",
          "use grpo.group_size=2 or more (the study: 16)")
    check(g.advantage in ADVANTAGES, "advantage", f"unknown estimator {g.advantage!r}",
          "grpo (mean and std per group) or drgrpo (mean only)")
    check(g.loss_agg in LOSS_AGGS, "loss_agg", f"unknown aggregation {g.loss_agg!r}", f"use one of {', '.join(LOSS_AGGS)}")
    check(g.weight_sync in WEIGHT_SYNCS, "weight_sync", f"unknown method {g.weight_sync!r}",
          f"use one of {', '.join(WEIGHT_SYNCS)}")
    check(0 <= g.clip_low < 1 and g.clip_high >= 0, "clip_low", f"clip range [{g.clip_low}, {g.clip_high}] is invalid",
          "e.g. grpo.clip_low=0.2 grpo.clip_high=0.28")
    check(g.temperature > 0, "temperature", f"must be > 0 for sampling, got {g.temperature}", "e.g. 1.0")
    check(0 < g.top_p <= 1, "top_p", f"must lie in (0, 1], got {g.top_p}", "e.g. 1.0")
    check(not g.tis or g.tis_cap >= 1, "tis_cap", f"must be >= 1, got {g.tis_cap}", "e.g. grpo.tis_cap=2")
    check(g.logprob_chunk_tokens >= 1, "logprob_chunk_tokens", f"must be >= 1, got {g.logprob_chunk_tokens}",
          "e.g. 2048 (fp32 logits of that many tokens at a time)")
    longest = int(g.max_prompt_tokens) + int(g.max_new_tokens)
    budget = int(g.engine.max_tokens_per_micro_batch)
    check(budget == 0 or budget >= longest, "engine.max_tokens_per_micro_batch",
          f"a budget of {budget} tokens is below the longest possible row ({longest} = max_prompt_tokens + "
          "max_new_tokens)", f"set grpo.engine.max_tokens_per_micro_batch>={longest}, or 0 for row-count batches")
    check(not g.tis or (g.top_p >= 1 and g.top_k == 0), "tis",
          f"truncated importance sampling with top_p={g.top_p}, top_k={g.top_k}: the engine samples from the "
          "truncated distribution and reports its log-probs, while the learner's log-probs are the full "
          "distribution's, so the IS weights would measure the truncation, not the engine/learner gap",
          "sample untruncated (grpo.top_p=1.0 grpo.top_k=0, the study's setting) or turn it off with grpo.tis=false")
    check(g.kl_coef >= 0, "kl_coef", f"must be >= 0, got {g.kl_coef}", "0 turns the KL term off (the study)")
    check(g.warn_zero_advantage_steps >= 0, "warn_zero_advantage_steps", "must be >= 0", "0 turns the warning off")
    check(g.max_staleness >= 0, "max_staleness", "must be >= 0", "0 = synchronous (the study)")
    check(g.eval_prompts >= 0 and g.eval_every >= 0, "eval_prompts", "must be >= 0", "0 turns evaluation off")
    check(g.rollout_workers >= 0, "rollout_workers", "must be >= 0", "e.g. grpo.rollout_workers=1")
    check(0 < g.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must lie in (0, 1]", "e.g. 0.85")
    e, o = g.engine, g.optim
    for field, ok, allowed in (("engine.zero_stage", e.zero_stage in (0, 1, 2, 3), "0, 1, 2 or 3"),
                               ("engine.precision", e.precision in PRECISIONS, ", ".join(PRECISIONS)),
                               ("engine.optimizer", e.optimizer in OPTIMIZERS, ", ".join(OPTIMIZERS)),
                               ("engine.micro_batch_size", e.micro_batch_size >= 1, "a number >= 1"),
                               ("optim.schedule", o.schedule in SCHEDULES, ", ".join(SCHEDULES)),
                               ("optim.lr", o.lr > 0, "a number > 0 (the study: 2e-6)")):
        check(ok, field, f"{OmegaConf.select(g, field)!r} is not allowed", f"use {allowed}")
    try:
        plan = roles(cfg, layout)
    except RoleError as err:
        raise ConfigError("grpo.rollout_workers", str(err),
                          "size the allocation (cluster.nodes, cluster.tasks_per_node, cluster.gpus_per_node) "
                          "and grpo.rollout_workers / grpo.tensor_parallel_size to fit") from None
    if layout.gpus_per_node:
        check_gpu_layout(cfg, layout, plan)
    resolve_init(cfg, g.init_from, "grpo.init_from")  # a run named there has exported its model


COLOCATE_MAX_UTIL = 0.5  # vLLM's share of a GPU it shares with a learner


def check_gpu_layout(cfg, layout: Layout, plan: list) -> None:
    """Every GPU of the allocation has a task, and a learner shares a GPU with an engine
    only when grpo.colocate asks for it (with room left for the learner)."""
    from m2rl.errors import ConfigError
    from m2rl.roles import shared_gpus, unused_gpus

    g, G = cfg.grpo, layout.gpus_per_node
    R, T = int(g.rollout_workers), int(g.tensor_parallel_size)
    free = unused_gpus(plan, layout.nodes, G)
    if free:
        node, gpus = next(iter(free.items()))
        if layout.nodes == 1:
            learners = G - R * T
            fix = (f"set cluster.tasks_per_node={learners + R} ({learners} learners on one GPU each + {R} engine(s) "
                   f"x {T} GPU(s) = {G} GPUs)" if learners >= 1 else
                   f"lower grpo.rollout_workers x grpo.tensor_parallel_size below {G}")
        else:
            fix = (f"set cluster.tasks_per_node={G} (one learner per GPU on the learner nodes) and "
                   f"grpo.rollout_workers to a multiple of {max(1, G // T)} (engines of {T} GPU(s) filling a node)")
        raise ConfigError("cluster.tasks_per_node", f"{len(gpus)} of the {G} GPUs of node {node} ({gpus}) would be "
                          f"used by no task of the role plan ({layout.tasks} tasks: "
                          f"{sum(r.has_learner for r in plan)} learner(s), {R} engine(s) x {T} GPU(s))", fix)
    shared = shared_gpus(plan, layout.nodes)
    if shared and not g.colocate:
        raise ConfigError("grpo.colocate", f"a learner and a vLLM engine would share GPU(s) {shared} (node, GPU) "
                          f"with vLLM taking gpu_memory_utilization={g.gpu_memory_utilization} of it",
                          "give the engines GPUs of their own (more cluster.gpus_per_node, or fewer tasks), or ask "
                          f"for sharing with grpo.colocate=true grpo.gpu_memory_utilization<={COLOCATE_MAX_UTIL}")
    if shared and g.gpu_memory_utilization > COLOCATE_MAX_UTIL:
        raise ConfigError("grpo.gpu_memory_utilization", f"{g.gpu_memory_utilization} of a GPU shared with a learner "
                          "leaves the learner too little memory",
                          f"set grpo.gpu_memory_utilization<={COLOCATE_MAX_UTIL} with grpo.colocate=true "
                          "(e.g. 0.3 for a small model)")


STAGE = Stage("grpo", run, schema=GRPOConfig, validate=validate, roles=roles,
              reads=("grpo.init_from: a run of the experiment (sft/multi: its export/), an HF dir or hub id; "
                     "unset: the model config's raw model (logged as a warning)",
                     "the domain's RL prompts (data.*)"),
              writes=("export/: the final policy in Hugging Face format",
                      "metrics.jsonl: per-step rewards, loss statistics, time split", "tb/: TensorBoard scalars"))
