"""`stage=eval`: models on benchmarks, Avg@K and pass@k, with vLLM and the domain verifiers.

    python -m m2rl.launch stage=eval eval.model=grpo/math        # one run's export
    python -m m2rl.launch -m stage=eval eval.model=all           # base, SFT and every export
    python -m m2rl.launch stage=eval eval.model=/path/to/hf_dir eval.benchmarks=[aime24,ifbench]

One task per job: one vLLM engine over the job's GPUs (tensor parallel), or the CPU. The
models (`eval.model`: m2rl.jobs.eval.targets) run one after another in that engine: a
model of the same architecture is loaded into it (m2rl.jobs.eval.engine). Benchmarks
(`eval.benchmarks`, the registry m2rl.eval) default to the study's sampling (temperature
1.0, top_p 0.7, 32k tokens, the study's K); `eval.samples`, `eval.max_tokens`, ... and
`eval.sampling.<benchmark>` override them. Results per model in `<exp>/eval/<slug>/`:
results.json (what the report reads), samples.jsonl.gz, and the shards a preempted eval
keeps (m2rl.jobs.eval.shards). The job's own run dir is `<exp>/eval/<slug of eval.model>`.
"""
from __future__ import annotations

from m2rl.errors import ConfigError
from m2rl.stage import Layout, Stage

from .config import EvalConfig
from .config import validate as validate_section


def validate(cfg, layout: Layout) -> None:
    from .targets import resolve

    if layout.tasks != 1:
        raise ConfigError("cluster.tasks_per_node", f"an eval job runs one task, this layout has {layout.tasks} "
                          f"({layout.nodes} node(s) x {layout.tasks_per_node})",
                          "use cluster.nodes=1 cluster.tasks_per_node=1 (the engine spans the node's GPUs)")
    validate_section(cfg)
    tp = cfg.eval.tensor_parallel_size
    if tp is not None:
        if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
            raise ConfigError("eval.tensor_parallel_size", f"must be a whole number >= 1 or null, got {tp!r}",
                              "drop it to use every GPU of the job")
        if layout.gpus_per_node and tp != layout.gpus_per_node:
            raise ConfigError("eval.tensor_parallel_size", f"{tp} GPU(s) per engine but the job has "
                              f"{layout.gpus_per_node}: the rest would sit idle",
                              f"set cluster.gpus_per_node={tp}, or drop eval.tensor_parallel_size")
    resolve(cfg)


def run(ctx) -> dict:
    from .loop import run as body

    return body(ctx)


STAGE = Stage("eval", run, schema=EvalConfig, validate=validate,
              reads=("<exp>/<stage>/<run>/export", "the base model (model=...)"),
              writes=("<exp>/eval/<model>/results.json", "<exp>/eval/<model>/samples.jsonl.gz",
                      "<exp>/eval/<model>/shards/"),
              mutable=("reward_workers", "batch_prompts", "gpu_memory_utilization", "cpu_kv_cache_gb",
                       "enforce_eager"))
