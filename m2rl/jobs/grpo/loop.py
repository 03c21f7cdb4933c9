"""The GRPO job body: `run(ctx)`.

Every task finds its role (`roles`): rollout tasks start a vLLM engine and serve the
driver; learners form their own process group (DeepSpeed's), and learner 0 drives:

  sample prompts (deterministic in step) -> rollout workers generate groups and reward
  them -> group-normalised advantages -> every learner takes its shard through the
  clipped loss and one optimizer step -> new weights to every engine -> metrics ->
  `ctx.boundary` (checkpoint when due, stop after a preemption save).

Checkpoints hold the learners' DeepSpeed state, the step (which fixes the sampler's
position and the rollout seeds), running totals and each learner's RNG. A resumed run
pushes the checkpoint's weights to the freshly started engines before its first batch.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from pathlib import Path

from m2rl.jobs.grpo import roles as R
from m2rl.runtime import Interrupted, JobContext

log = logging.getLogger("m2rl.grpo")
EXPORT_DIR = "export"
CONNECT_TIMEOUT_S = 3600.0  # engines on big models take minutes to start


def model_dir(cfg) -> str:
    from m2rl.jobs.sft import model_config
    from m2rl.models import prepare_model

    return str(cfg.grpo.init_from or prepare_model(model_config(cfg)))


def max_model_len(path: str, gcfg) -> int:
    import json

    want = int(gcfg.max_prompt_tokens) + int(gcfg.max_new_tokens)
    try:
        conf = json.loads((Path(path) / "config.json").read_text())
    except OSError:  # a hub id: vLLM knows
        return want
    text = conf.get("text_config", conf)
    return min(want, int(text.get("max_position_embeddings") or want))



class PromptSampler:
    """Prompts of step k: positions [k*B, (k+1)*B) of an endless stream of per-epoch
    permutations seeded by (seed, epoch); the position is a function of the step."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        import random

        if epoch not in self._perms:
            order = list(range(self.n))
            random.Random(f"{self.seed}:grpo:{epoch}").shuffle(order)
            self._perms = {epoch: order}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        return [self._perm(p // self.n)[p % self.n] for p in range(step * self.batch, (step + 1) * self.batch)]

    def state(self, step: int) -> dict:
        pos = step * self.batch
        return {"position": pos, "epoch": pos // self.n, "seed": self.seed, "n": self.n}


def run(ctx: JobContext) -> dict:
    g = ctx.cfg.grpo
    env = ctx.dist
    plan = R.plan(env.world_size, env.num_nodes, len(R.visible_gpus()), int(g.rollout_workers), int(g.tensor_parallel_size))
    role = plan[env.rank]
    log.info("GRPO task %d/%d: %s %d (%d learners, %d rollout workers, GPUs %s)", env.rank, env.world_size,
             role.kind, role.index, role.learners, role.rollouts, list(role.gpus) or "none")
    if role.kind == "idle":
        return {"role": "idle"}
    R.bind_devices(role)
    rdzv = R.rendezvous(env.num_nodes, salt=str(ctx.run_dir))
    if role.kind == "rollout":
        return _serve(ctx, role, rdzv)
    return _learn(ctx, role, plan, rdzv)


@contextlib.contextmanager
def _children_deaf_to_preemption():
    """Slurm sends the preemption notice (USR2, or TERM) to every process of the step; a
    vLLM engine or verifier process would die of it mid-step. Children started in here
    inherit a signal mask that blocks the notices; this process gets any notice that
    arrived meanwhile as soon as the block ends (a blocked signal stays pending)."""
    from m2rl.runtime.preemption import submitit_signal

    sigs = {signal.SIGUSR2, signal.SIGTERM, submitit_signal()}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _engine(cfg, role: R.Role):
    from m2rl.jobs.grpo.rollout import RolloutEngine, RolloutWorker

    g = cfg.grpo
    path = model_dir(cfg)
    with _children_deaf_to_preemption():
        engine = RolloutEngine(path, g, seed=int(cfg.experiment.seed) + role.index,
                               max_model_len=max_model_len(path, g), on_gpu=bool(role.gpus),
                               precision=str(g.engine.precision))
        worker = RolloutWorker(engine, g)
        worker.start_verifiers()
    return worker


def _serve(ctx: JobContext, role: R.Role, rdzv: R.Rendezvous) -> dict:
    from m2rl.jobs.grpo import transport

    worker = _engine(ctx.cfg, role)
    try:
        final = transport.serve(rdzv.host, rdzv.channel_port, role.index, rdzv.key, worker.handle, CONNECT_TIMEOUT_S)
    finally:
        worker.close()
    state, step = final.get("state", "completed"), int(final.get("step", 0))
    log.info("rollout worker %d: driver says %s at step %d", role.index, state, step)
    if state in ("preempted", "timeout"):
        raise Interrupted(state, step)  # the runtime hands over to submitit (a no-op off rank 0)
    if state == "failed":
        raise RuntimeError("the learners failed; see learner 0's log")
    return {"role": "rollout", "step": step}


def _weight_sync_method(cfg, plan: list[R.Role], num_nodes: int) -> str:
    g = cfg.grpo
    if plan[0].kind == "colocated" or not plan[0].gpus:
        return "bytes"
    first = plan[0]
    separate = R.separate_gpus(len(plan), num_nodes, len(R.visible_gpus()), first.rollouts, int(g.tensor_parallel_size))
    if g.weight_sync == "nccl" and not separate:
        raise RuntimeError("grpo.weight_sync=nccl needs engines on GPUs of their own (NCCL refuses two ranks "
                           "on one GPU): give the job more GPUs, or use weight_sync=auto")
    if g.weight_sync == "auto":
        return "nccl" if separate else "bytes"
    return str(g.weight_sync)


class Driver:
    """Learner 0's half of a step: prompts out, rollouts and advantages back."""

    def __init__(self, cfg, fleet, tokenizer):
        from m2rl.data import load_rl_dataset
        from m2rl.jobs.sft import data_config

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
        from m2rl.jobs.grpo.rollout import request_seeds, sampling_spec

        reqs = [self.request(self.train[i]) for i in self.sampler.indices(step)]
        self.fleet.submit(("train", step), reqs, sampling_spec(self.g), request_seeds(self.seed, step, len(reqs)))
        return reqs

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out prompts: reward and pass rate, per domain too (the same seeds each time)."""
        from m2rl.jobs.grpo.metrics import rollout_metrics
        from m2rl.jobs.grpo.rollout import request_seeds, sampling_spec

        reqs = self._eval
        self.fleet.submit(("eval", step), reqs, sampling_spec(self.g, evaluation=True),
                          request_seeds(self.seed + 1, 0, len(reqs)))
        gen = self.fleet.collect(("eval", step))
        return {k: v for k, v in rollout_metrics([r["sample"] for r in reqs], gen.groups).items()
                if not k.startswith("advantage")}


def _items(reqs: list[dict], groups: list[list[dict]], g) -> list[dict]:
    """One training item per rollout, with its group-normalised advantage."""
    from m2rl.jobs.grpo.loss import group_advantages

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
    from m2rl.jobs.grpo.learner import shard, split

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


def _learn(ctx: JobContext, role: R.Role, plan: list[R.Role], rdzv: R.Rendezvous) -> dict:
    import torch

    from m2rl.jobs.grpo.fleet import LocalFleet, RemoteFleet
    from m2rl.jobs.grpo.learner import Learner, shard
    from m2rl.jobs.grpo.metrics import MetricsLog, learner_metrics, rollout_metrics, time_metrics
    from m2rl.jobs.grpo.transport import DriverChannel
    from m2rl.jobs.grpo.weight_sync import BroadcastSender, state_dict_bytes
    from m2rl.models import load_tokenizer
    from m2rl.train.checkpoint import load_engine, save_engine
    from m2rl.train.distributed import init_distributed
    from m2rl.train.export import export_hf

    cfg, g = ctx.cfg, ctx.cfg.grpo
    t_start = time.time()
    # the learners' group, not the whole job's
    init_distributed(int(g.engine.dist_timeout_s), group=R.learner_env(role, rdzv, ctx.dist.local_rank))
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

    method = _weight_sync_method(cfg, plan, ctx.dist.num_nodes)
    fleet, driver, metrics, nccl = None, None, None, None
    if role.is_driver:
        if role.kind == "colocated":
            fleet = LocalFleet(_engine(cfg, role))
        else:
            fleet = RemoteFleet(DriverChannel(rdzv.host, rdzv.channel_port, role.rollouts, rdzv.key, CONNECT_TIMEOUT_S))
        driver = Driver(cfg, fleet, tokenizer)
        metrics = MetricsLog(ctx.run_dir, ctx.tb_dir, int(g.steps), step, int(g.log_every))
        log.info("GRPO %s: %d steps of %d prompts x %d, %d learner(s) (ZeRO-%d, %s), %d engine(s), weight sync %s, "
                 "from %s", cfg.domain.name, int(g.steps), int(g.prompts_per_step), int(g.group_size), role.learners,
                 learner.info.zero_stage, learner.info.precision, max(1, role.rollouts), method, path)
    if method == "nccl":
        n_ranks = 1 + role.rollouts * int(g.tensor_parallel_size)
        nccl = BroadcastSender(rdzv.host, rdzv.nccl_port, n_ranks, role.is_driver)
        bucket_plan = nccl.plan(learner.engine)  # names, dtypes and shapes: fixed for the run
        if fleet is not None:
            fleet.nccl_init(rdzv.host, rdzv.nccl_port, int(g.tensor_parallel_size))

    def push(version: int) -> list[float]:
        """The learners' current weights onto every engine (collective over learners)."""
        if method == "nccl":
            if fleet is not None:
                fleet.nccl_begin(version, bucket_plan)
            nccl.send(learner.engine, bucket_plan)
            return fleet.nccl_end(version) if fleet is not None else []
        blob = state_dict_bytes(learner.engine)
        return fleet.push_bytes(version, blob) if fleet is not None else []

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
            push(step)  # engines start from the base weights: give them the checkpoint's
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
                reqs = pending.pop(step)
                gen = fleet.collect(("train", step))
                items = _items(reqs, gen.groups, g)
                payload = {"items": items}
            t_gen = time.perf_counter()
            payload = _broadcast(payload)
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
            load_s = push(step + 1)
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
              "seconds": {k: round(v, 3) for k, v in totals.items() if k.endswith("_s")}}
    if history.get("eval"):
        result["eval"] = history["eval"]
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
