"""The GRPO job body: `run(ctx)`.

Every task finds its role (m2rl.roles): rollout tasks start a vLLM engine (m2rl.rollout)
and serve the driver; learners (m2rl.rl) form their own process group (DeepSpeed's), and
learner 0 drives:

  sample prompts (deterministic in step) -> rollout workers generate groups and reward
  them -> group-normalised advantages -> every learner takes its shard through the
  clipped loss and one optimizer step -> new weights to every engine (m2rl.weightsync)
  -> metrics ->
  `ctx.boundary` (checkpoint when due, stop after a preemption save).

Checkpoints hold the learners' DeepSpeed state, the step (which fixes the sampler's
position and the rollout seeds), running totals and each learner's RNG. A resumed run
pushes the checkpoint's weights to the freshly started engines before its first batch.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from m2rl import roles as R
from m2rl.runtime import Interrupted, JobContext
from m2rl.runtime.dist import node_name

log = logging.getLogger("m2rl.grpo")
EXPORT_DIR = "export"
CONNECT_TIMEOUT_S = 3600.0  # engines on big models take minutes to start


def model_dir(cfg) -> str:
    from m2rl.sections import start_model

    return str(start_model(cfg, cfg.grpo.init_from, "grpo.init_from"))


def run(ctx: JobContext) -> dict:
    env = ctx.dist
    roles = _role_plan(ctx)
    role = roles[env.rank]
    log.info("GRPO task %d/%d: %s %d (%d learners, %d rollout workers, GPUs %s)", env.rank, env.world_size,
             role.kind, role.index, role.learners, role.rollouts, list(role.gpus) or "none")
    if role.kind == "idle":
        return {"role": "idle"}
    R.bind_devices(role)
    ends = R.endpoints(env.num_nodes, salt=str(ctx.run_dir), publish_dir=ctx.run_dir, rank=env.rank,
                       wait_s=CONNECT_TIMEOUT_S)
    if role.kind == "rollout":
        return _serve(ctx, role, ends)
    return _learn(ctx, role, roles, ends)


def _role_plan(ctx: JobContext) -> list[R.Role]:
    """The plan validation checked (m2rl.jobs.grpo.roles), for the tasks this job really
    has: the same as cluster.* under an executor; one task for an inline run (no -m)."""
    from m2rl.jobs.grpo import roles
    from m2rl.stage import Layout

    env, c = ctx.dist, ctx.cfg.cluster
    layout = Layout(env.num_nodes, env.world_size // env.num_nodes, int(c.gpus_per_node), int(c.cpus_per_task))
    if layout != Layout.of(ctx.cfg):
        log.info("GRPO runs as %d task(s) on %d node(s), not the configured %d x %d", layout.tasks, layout.nodes,
                 c.nodes, c.tasks_per_node)
    visible = len(R.visible_gpus())
    if layout.gpus_per_node and visible < layout.gpus_per_node:
        raise RuntimeError(f"cluster.gpus_per_node={layout.gpus_per_node} but this task sees {visible} GPU(s) "
                           "(CUDA_VISIBLE_DEVICES): the allocation does not match the config")
    return roles(ctx.cfg, layout)


def _worker(cfg, role: R.Role):
    from m2rl.rollout import start_worker

    g = cfg.grpo
    return start_worker(model_dir(cfg), g, seed=int(cfg.experiment.seed) + role.index, on_gpu=bool(role.gpus),
                        precision=str(g.engine.precision))


def _serve(ctx: JobContext, role: R.Role, ends: R.Endpoints) -> dict:
    from m2rl.rollout import transport

    worker = _worker(ctx.cfg, role)
    try:
        final = transport.serve(ends.host, ends.channel_port, role.index, ends.key, worker.handle, CONNECT_TIMEOUT_S)
    finally:
        worker.close()
    state, step = final.get("state", "completed"), int(final.get("step", 0))
    log.info("rollout worker %d: driver says %s at step %d", role.index, state, step)
    if state in ("preempted", "timeout"):
        raise Interrupted(state, step)  # the runtime hands over to submitit (a no-op off rank 0)
    if state == "failed":
        raise RuntimeError("the learners failed; see learner 0's log")
    return {"role": "rollout", "step": step}


class Driver:
    """Learner 0's half of a step: prompts out, rollouts and advantages back."""

    def __init__(self, cfg, fleet, tokenizer):
        from m2rl.data import load_rl_dataset
        from m2rl.rl.sampler import PromptSampler
        from m2rl.sections import data_config

        self.cfg, self.g, self.fleet = cfg, cfg.grpo, fleet
        self.seed = int(cfg.experiment.seed)
        data = data_config(cfg)
        self.train = load_rl_dataset(cfg.domain.name, data, "train")
        self.sampler = PromptSampler(len(self.train), int(self.g.prompts_per_step), self.seed)
        self.tokenizer = tokenizer
        self._eval = None
        if int(self.g.eval_prompts) > 0:
            rows = load_rl_dataset(cfg.domain.name, data, "eval")
            self._eval = [self.request(rows[i]) for i in range(min(len(rows), int(self.g.eval_prompts)))]

    def request(self, row: dict) -> dict:
        from m2rl.data.schema import to_sample
        from m2rl.train.batches import prompt_ids

        sample = to_sample(row)
        ids = prompt_ids(self.tokenizer, sample["messages"])[-int(self.g.max_prompt_tokens):]
        meta = {k: sample[k] for k in ("id", "domain", "reward_spec") if k in sample}
        return {"prompt_ids": ids, "sample": meta}

    def submit(self, step: int) -> list[dict]:
        from m2rl.rollout.engine import request_seeds, sampling_spec

        reqs = [self.request(self.train[i]) for i in self.sampler.indices(step)]
        self.fleet.submit(("train", step), reqs, sampling_spec(self.g), request_seeds(self.seed, step, len(reqs)))
        return reqs

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out prompts: reward and pass rate, per domain too (the same seeds each time)."""
        from m2rl.rl.metrics import rollout_metrics
        from m2rl.rollout.engine import request_seeds, sampling_spec

        reqs = self._eval
        self.fleet.submit(("eval", step), reqs, sampling_spec(self.g, evaluation=True),
                          request_seeds(self.seed + 1, 0, len(reqs)))
        gen = self.fleet.collect(("eval", step))
        return {k: v for k, v in rollout_metrics([r["sample"] for r in reqs], gen.groups).items()
                if not k.startswith("advantage")}


def _items(reqs: list[dict], groups: list[list[dict]], g) -> list[dict]:
    """One training item per rollout, with its group-normalised advantage."""
    from m2rl.rl.loss import group_advantages

    rewards = [c["reward"] for grp in groups for c in grp]
    adv = group_advantages(rewards, int(g.group_size), scale_by_std=(g.advantage == "grpo")).tolist()
    items, k = [], 0
    for req, grp in zip(reqs, groups):
        for c in grp:
            items.append({"prompt": req["prompt_ids"], "ids": c["ids"], "logprobs": c["logprobs"], "adv": adv[k]})
            k += 1
    return [it for it in items if len(it["ids"])]


def _mini_sizes(items: list[dict], learners: int, mini_batches: int) -> tuple[list[float], list[int]]:
    """Tokens and sequences of each mini-batch over all learners (every rank computes it)."""
    from m2rl.rl.batching import shard, split

    tokens, seqs = [0.0] * mini_batches, [0] * mini_batches
    for r in range(learners):
        for m, part in enumerate(split(shard(items, r, learners), mini_batches)):
            tokens[m] += sum(len(it["ids"]) for it in part)
            seqs[m] += len(part)
    return tokens, seqs


def _reduce_stats(stats: dict[str, float]) -> dict[str, float]:
    """Sum the loss statistics over learners (max/min for *_max/*_min; lr and grad norm
    are the same everywhere)."""
    import torch.distributed as td

    if not td.is_initialized() or td.get_world_size() == 1:
        return stats
    from m2rl.train.distributed import all_reduce

    keys = sorted(stats)
    sums = [k for k in keys if not k.endswith(("_max", "_min")) and k not in ("lr", "grad_norm")]
    out = dict(stats)
    out.update(zip(sums, all_reduce([stats[k] for k in sums])))
    ext = [k for k in keys if k.endswith(("_max", "_min"))]
    if ext:
        top = all_reduce([stats[k] if k.endswith("_max") else -stats[k] for k in ext], op="max")
        out.update({k: (v if k.endswith("_max") else -v) for k, v in zip(ext, top)})
    return out


def _broadcast(obj):
    import torch.distributed as td

    if not td.is_initialized() or td.get_world_size() == 1:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj) -> list:
    """`obj` from every learner, in rank order."""
    import torch.distributed as td

    if not td.is_initialized() or td.get_world_size() == 1:
        return [obj]
    out = [None] * td.get_world_size()
    td.all_gather_object(out, obj)
    return out


def _learn(ctx: JobContext, role: R.Role, roles: list[R.Role], ends: R.Endpoints) -> dict:
    import torch

    from m2rl.models import load_tokenizer
    from m2rl.rl.batching import shard
    from m2rl.rl.learner import Learner
    from m2rl.rl.metrics import MetricsLog, learner_metrics, rollout_metrics, time_metrics, verifier_errors
    from m2rl.rl.signal import SignalWatch
    from m2rl.rollout.fleet import LocalFleet, RemoteFleet
    from m2rl.rollout.transport import DriverChannel, StopWaiting
    from m2rl.sections import describe_start
    from m2rl.train.checkpoint import load_engine, save_engine
    from m2rl.train.distributed import init_distributed
    from m2rl.train.export import export_hf
    from m2rl.weightsync import WeightSync, choose_method

    cfg, g = ctx.cfg, ctx.cfg.grpo
    t_start = time.time()
    # the learners' group, not the whole job's
    init_distributed(int(g.engine.dist_timeout_s), group=R.learner_env(role, ends, ctx.dist.local_rank))
    seed = int(cfg.experiment.seed)
    torch.manual_seed(seed + role.index)
    path = model_dir(cfg)
    tokenizer = load_tokenizer(path)
    n_seqs = int(g.prompts_per_step) * int(g.group_size)
    learner = Learner(path, g, int(g.steps), -(-n_seqs // role.learners), tokenizer.pad_token_id)

    step, totals, history = 0, {"prompts": 0, "generated_tokens": 0, "trained_tokens": 0}, {}
    if (ck := ctx.resume()) is not None:
        client = load_engine(learner.engine, ck.path)
        step, totals, history = int(client["step"]), dict(client["totals"]), dict(client.get("history", {}))

    watch = SignalWatch(int(g.warn_zero_advantage_steps), history.get("signal"))
    tp = int(g.tensor_parallel_size)
    method = choose_method(str(g.weight_sync), roles, int(cfg.cluster.gpus_per_node), ctx.dist.num_nodes, tp)
    fleet, driver, metrics = None, None, None
    if role.is_driver:
        if role.kind == "colocated":
            fleet = LocalFleet(_worker(cfg, role))
        else:
            fleet = RemoteFleet(DriverChannel(ends.host, ends.channel_port, role.rollouts, ends.key, CONNECT_TIMEOUT_S))
        driver = Driver(cfg, fleet, tokenizer)
        metrics = MetricsLog(ctx.run_dir, ctx.tb_dir, int(g.steps), step, int(g.log_every))
        (log.info if g.init_from else log.warning)("GRPO starts from %s",
                                                   describe_start(cfg, g.init_from, "grpo.init_from", path))
        log.info("GRPO %s: %d steps of %d prompts x %d, %d learner(s) (ZeRO-%d, %s), %d engine(s), weight sync %s, "
                 "model %s", cfg.domain.name, int(g.steps), int(g.prompts_per_step), int(g.group_size), role.learners,
                 learner.info.zero_stage, learner.info.precision, max(1, role.rollouts), method, path)
    sync = WeightSync(method, learner.engine, fleet, ends.host, ends.nccl_port, role.rollouts, tp, role.is_driver)
    learner_nodes = _gather(node_name())

    def save(d: Path) -> None:
        save_engine(learner.engine, d, {"step": step, "totals": totals, "history": history,
                                        "sampler": driver.sampler.state(step) if driver else None})

    def evaluate(at: int) -> None:
        if driver is not None and driver._eval:
            values = driver.evaluate(at)
            history.setdefault("eval", {})[str(at)] = values
            metrics.step(at, values, kind="eval")
            log.info("eval at step %d: reward %.4f, pass rate %.4f", at, values["reward/mean"],
                     values["reward/pass_rate"])

    last: dict = {}
    pending: dict[int, list[dict]] = {}  # batches submitted ahead (max_staleness > 0)
    try:
        if step > 0:
            sync.push(step)  # engines start from the base weights: give them the checkpoint's
        if step == 0 and int(g.eval_prompts) > 0:
            evaluate(0)
        while step < int(g.steps):
            t0 = time.perf_counter()
            payload = None
            if driver is not None:
                # queue this batch and up to max_staleness more: batch k+s is generated with
                # weights from before step k, while the learners work on batch k
                for ahead in range(step, min(int(g.steps), step + int(g.max_staleness) + 1)):
                    if ahead not in pending:
                        pending[ahead] = driver.submit(ahead)
                try:
                    # a notice during generation (minutes at study scale) stops the wait at once
                    gen = fleet.collect(("train", step), should_stop=ctx.stop_requested)
                    reqs = pending.pop(step)
                    payload = {"items": _items(reqs, gen.groups, g)}
                except StopWaiting:
                    payload = {"stop": True}
            t_gen = time.perf_counter()
            payload = _broadcast(payload)
            if payload.get("stop"):
                ctx.stop_now(step, save)  # every learner saves its part of step `step`, then stops
            items = payload["items"]
            mini_tokens, mini_seqs = _mini_sizes(items, role.learners, learner.mini_batches)
            train = items
            if g.skip_zero_advantage and learner.mini_batches == 1 and not float(g.kl_coef):
                # a zero advantage contributes exactly nothing but its tokens to the mean
                train = [it for it in items if it["adv"] != 0.0]
            stats = learner.train_step(shard(train, role.index, role.learners), mini_tokens, mini_seqs,
                                       role.learners)
            stats = _reduce_stats(stats)
            t_learn = time.perf_counter()
            load_s = sync.push(step + 1)
            t_sync = time.perf_counter()
            step += 1
            if driver is not None:
                generated = gen.tokens
                trained = sum(len(it["prompt"]) + len(it["ids"]) for it in train)
                totals["prompts"] += len(reqs)
                totals["generated_tokens"] += generated
                totals["trained_tokens"] += trained
                for k, v in (("generate_s", max(w["generate_s"] for w in gen.workers)),
                             ("reward_s", max(w["reward_s"] for w in gen.workers)),
                             ("learn_s", t_learn - t_gen), ("sync_s", t_sync - t_learn), ("step_s", t_sync - t0)):
                    totals[k] = totals.get(k, 0.0) + v
                last = {**rollout_metrics([r["sample"] for r in reqs], gen.groups), **learner_metrics(stats),
                        **time_metrics(t_sync - t0, t_gen - t0, gen.workers, load_s, t_learn - t_gen,
                                       t_sync - t_learn, generated, trained),
                        "totals/prompts": totals["prompts"], "totals/generated_tokens": totals["generated_tokens"]}
                metrics.step(step, last)
                samples = [r["sample"] for r in reqs]
                watch.observe(step, cfg.domain.name, last["advantage/zero_groups_frac"],
                              verifier_errors(samples, gen.groups), sum(len(grp) for grp in gen.groups))
                history["signal"] = watch.state()
            if int(g.eval_every) and step % int(g.eval_every) == 0 and step < int(g.steps):
                evaluate(step)
            ctx.boundary(step, save)
        if int(g.eval_prompts) > 0 and str(step) not in history.get("eval", {}):
            evaluate(step)
    except Interrupted as stop:
        if fleet is not None:
            fleet.close({"op": "stop", "state": stop.state, "step": stop.step})
        raise
    except BaseException:
        if fleet is not None:
            fleet.close({"op": "stop", "state": "failed", "step": step})
        raise
    if fleet is not None:
        fleet.close({"op": "stop", "state": "completed", "step": step})

    result = {"step": step, "prompts": totals["prompts"], "generated_tokens": totals["generated_tokens"],
              "trained_tokens": totals["trained_tokens"], "learners": role.learners,
              "rollout_workers": max(1, role.rollouts), "weight_sync": method,
              "zero_stage": learner.info.zero_stage, "precision": learner.info.precision,
              "seconds": {k: round(v, 3) for k, v in totals.items() if k.endswith("_s")},
              "init_from": g.init_from, "start_model": path}
    if history.get("eval"):
        result["eval"] = history["eval"]
    if role.is_driver:
        result["learning_signal"] = watch.summary()
        result["placement"] = {"learners": learner_nodes, "rollout_workers": list(fleet.hosts)}
    if last:
        result["last"] = {k: last[k] for k in ("reward/mean", "reward/pass_rate", "response/length") if k in last}
    if g.export:
        out = ctx.run_dir / EXPORT_DIR
        dtype = torch.bfloat16 if learner.info.precision == "bf16" else None
        export_hf(learner.engine, out, tokenizer, dtype=dtype)
        result["export"] = str(out)
    if metrics is not None:
        metrics.close()
        log.info("GRPO done in %.1f s: %d steps, %d prompts, %d generated tokens", time.time() - t_start, step,
                 totals["prompts"], totals["generated_tokens"])
    return result
