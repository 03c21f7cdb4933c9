"""GRPO's allocation is checked against its role plan before submission (issue 11): config
composition keeps the stage's layout, every GPU has a task, a learner shares a GPU with an
engine only when asked, and the README's cluster example and the study preset resolve to
layouts that use every GPU."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from m2rl import jobs
from m2rl.errors import ConfigError
from m2rl.roles import shared_gpus, unused_gpus
from m2rl.stage import Layout

REPO = Path(__file__).resolve().parents[1]


def _cfg(*overrides):
    jobs.register()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _plan(cfg):
    return jobs.stage("grpo").roles(cfg, Layout.of(cfg))


def test_cluster_slurm_keeps_the_stages_task_layout():
    """configs/cluster/slurm.yaml is composed after the stage: it must not reset the
    stage's tasks (it once reset GRPO's learner + rollout pair to one task)."""
    local = _cfg("stage=grpo")
    slurm = _cfg("stage=grpo", "cluster=slurm", "cluster.partition=gpu")
    for key in ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task"):
        assert slurm.cluster[key] == local.cluster[key], key
    assert slurm.cluster.tasks_per_node == 2 and slurm.cluster.name == "slurm"
    assert [r.kind for r in _plan(slurm)] == ["learner", "rollout"]


def _readme_cluster_example() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text[text.index("## On a real Slurm cluster"):]
    cmd = block[block.index("```") + 3:]
    cmd = cmd[:cmd.index("```")].replace("\\\n", " ")
    args = cmd.split()
    assert args[:4] == ["python", "-m", "m2rl.launch", "-m"], args
    return [a for a in args[4:] if "," not in a]  # one job of the sweep


def test_the_readme_cluster_example_uses_every_gpu():
    args = _readme_cluster_example()
    cfg = _cfg(*args)
    jobs.validate(cfg, check_cluster=False)
    layout = Layout.of(cfg)
    roles = _plan(cfg)
    assert cfg.cluster.name == "slurm" and layout.gpus_per_node == 8
    used = sorted(g for r in roles for g in r.gpus)
    assert used == list(range(8)), roles  # each GPU used once: learners and engines apart
    assert not shared_gpus(roles, layout.nodes)
    text = (REPO / "README.md").read_text()
    assert re.search(r"tasks_per_node: %d\b" % layout.tasks_per_node, text), "README shows the resolved layout"


def test_the_study_preset_puts_learners_and_engines_on_their_own_nodes():
    cfg = _cfg("experiment=study-grpo", "cluster.partition=gpu")
    jobs.validate(cfg, check_cluster=False)
    roles = _plan(cfg)
    assert (cfg.grpo.prompts_per_step, cfg.grpo.group_size, cfg.grpo.max_new_tokens) == (128, 16, 32768)
    assert cfg.grpo.optim.lr == pytest.approx(2e-6) and cfg.model.path == "Qwen/Qwen3-4B-Base"
    node0, node1 = roles[:8], roles[8:]
    assert [r.kind for r in node0] == ["learner"] * 8 and sorted(g for r in node0 for g in r.gpus) == list(range(8))
    engines = [r for r in node1 if r.kind == "rollout"]
    assert len(engines) == 4 and sorted(g for r in engines for g in r.gpus) == list(range(8))
    assert not unused_gpus(roles, 2, 8)


@pytest.mark.parametrize("overrides, field, fix", [
    # 8 GPUs, 2 tasks: 6 GPUs idle; the fix names the task count that fills the node
    (["cluster.gpus_per_node=8"], "cluster.tasks_per_node", "cluster.tasks_per_node=8"),
    (["cluster.gpus_per_node=8", "cluster.tasks_per_node=3", "grpo.rollout_workers=2", "grpo.tensor_parallel_size=2"],
     "cluster.tasks_per_node", "cluster.tasks_per_node=6"),
    # 2 nodes of 8 GPUs, 8 tasks each, one TP=2 engine: 6 GPUs of the engine node unused
    (["cluster.nodes=2", "cluster.tasks_per_node=8", "cluster.gpus_per_node=8", "grpo.tensor_parallel_size=2"],
     "cluster.tasks_per_node", "multiple of 4"),
    # one GPU for a learner and an engine: sharing must be asked for
    (["cluster.gpus_per_node=1"], "grpo.colocate", "grpo.colocate=true"),
    (["cluster.tasks_per_node=1", "cluster.gpus_per_node=1"], "grpo.colocate", "grpo.colocate=true"),
    # asked for, but vLLM would take most of the shared GPU
    (["cluster.gpus_per_node=1", "grpo.colocate=true"], "grpo.gpu_memory_utilization", "<=0.5"),
    # more engines than the nodes hold
    (["cluster.nodes=2", "cluster.tasks_per_node=8", "cluster.gpus_per_node=8", "grpo.rollout_workers=16"],
     "grpo.rollout_workers", "cluster.nodes"),
])
def test_layouts_that_waste_or_overload_gpus_are_refused(overrides, field, fix):
    with pytest.raises(ConfigError) as err:
        jobs.validate(_cfg("stage=grpo", *overrides), check_cluster=False)
    assert err.value.field == field, err.value
    assert fix in err.value.fix, err.value


def test_sharing_a_gpu_when_asked_and_sized_to_fit():
    cfg = _cfg("stage=grpo", "cluster.gpus_per_node=1", "grpo.colocate=true", "grpo.gpu_memory_utilization=0.3")
    jobs.validate(cfg, check_cluster=False)
    assert shared_gpus(_plan(cfg), 1) == [(0, 0)]


def test_cpu_layouts_need_no_gpu_checks():
    for overrides in ([], ["cluster.tasks_per_node=1"], ["cluster.tasks_per_node=3", "grpo.rollout_workers=2"]):
        jobs.validate(_cfg("stage=grpo", *overrides), check_cluster=False)


@pytest.mark.parametrize("overrides,field,fix", [
    # the engine samples from a truncated distribution: IS weights would measure the truncation
    (["grpo.top_p=0.9"], "grpo.tis", "grpo.tis=false"),
    (["grpo.top_k=20"], "grpo.tis", "grpo.top_p=1.0 grpo.top_k=0"),
    # a token budget below the longest possible row could never hold it
    (["grpo.max_new_tokens=1000", "grpo.max_prompt_tokens=24", "grpo.engine.max_tokens_per_micro_batch=512"],
     "grpo.engine.max_tokens_per_micro_batch", "max_tokens_per_micro_batch>=1024"),
    (["grpo.logprob_chunk_tokens=0"], "grpo.logprob_chunk_tokens", "2048"),
    (["grpo.warn_zero_advantage_steps=-1"], "grpo.warn_zero_advantage_steps", "0 turns"),
])
def test_sampling_and_learner_memory_settings_are_checked(overrides, field, fix):
    with pytest.raises(ConfigError) as err:
        jobs.validate(_cfg("stage=grpo", *overrides), check_cluster=False)
    assert err.value.field == field, err.value
    assert fix in err.value.fix, err.value


def test_truncated_sampling_without_is_and_a_fitting_budget_are_allowed():
    jobs.validate(_cfg("stage=grpo", "grpo.top_p=0.9", "grpo.tis=false"), check_cluster=False)
    jobs.validate(_cfg("stage=grpo", "grpo.max_new_tokens=1000", "grpo.max_prompt_tokens=24",
                       "grpo.engine.max_tokens_per_micro_batch=1024"), check_cluster=False)


def test_sft_refuses_the_rl_token_budget():
    with pytest.raises(ConfigError) as err:
        jobs.validate(_cfg("stage=sft", "sft.engine.max_tokens_per_micro_batch=4096"), check_cluster=False)
    assert err.value.field == "sft.engine.max_tokens_per_micro_batch" and "sft.max_seq_len" in err.value.fix
