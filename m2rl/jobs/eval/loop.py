"""The eval job body: `run(ctx)`.

For each model (m2rl.jobs.eval.targets) and each benchmark (m2rl.eval), its prompts in
shards of `eval.shard_prompts`: the shards still missing, of every benchmark, go to the
engine together in batches of `eval.batch_prompts` prompts (each prompt with its
benchmark's K, temperature, top_p and max tokens, and a seed of its own id), are scored by
the domain verifiers and written as they finish (m2rl.jobs.eval.shards). A step is one
shard; a preemption notice aborts the batch in flight at once, and the requeued job redoes
only the shards that are missing. When a model's shards are all there, its
results.json and samples.jsonl.gz are written.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
import zlib
from pathlib import Path

from m2rl.runtime import JobContext
from m2rl.runtime.rundir import experiment_dir

from . import shards as S
from .config import benchmark_names, sampling_for
from .targets import Target, resolve

log = logging.getLogger("m2rl.eval")
PERCENT = ("avg_at_k", "avg_at_k_stderr")


def item_seed(seed: int, item_id: str) -> int:
    """A prompt's sampling seed: the same samples for it whatever else is in its batch."""
    return (zlib.crc32(item_id.encode()) + seed * 1_000_003) % (2**31 - 1)


@dataclasses.dataclass
class Unit:
    """One shard of one benchmark of one model."""

    benchmark: str
    index: int
    items: list
    path: Path


class Progress:
    """Samples done per benchmark, with samples/s and ETA: a bar when interactive, a log
    line per batch otherwise."""

    def __init__(self, totals: dict[str, int], done: dict[str, int], label: str):
        self.totals, self.done, self.t0, self.label = totals, dict(done), time.time(), label
        self.start = dict(done)
        self.bars = {}
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bars = {b: tqdm(total=n, initial=self.done[b], desc=f"{label} {b}", unit="sample", position=i,
                                 leave=True) for i, (b, n) in enumerate(totals.items())}

    def add(self, benchmark: str, n: int) -> None:
        self.done[benchmark] += n
        if benchmark in self.bars:
            self.bars[benchmark].update(n)

    def log(self) -> None:
        dt = max(time.time() - self.t0, 1e-9)
        for b, total in self.totals.items():
            new = self.done[b] - self.start[b]
            rate = new / dt
            eta = (total - self.done[b]) / rate if rate > 0 else math.inf
            log.info("%s %s: %d/%d samples, %.1f samples/s, ETA %s", self.label, b, self.done[b], total, rate,
                     "-" if math.isinf(eta) else f"{eta:.0f} s")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _benchmarks(cfg, names: list[str]) -> dict[str, tuple[list, object]]:
    from m2rl.eval import load

    e = cfg.eval
    return {n: (load(n, (e.sources or {}).get(n), limit=e.limit), sampling_for(e, n)) for n in names}


def _fingerprint(cfg, model: str, name: str, sampling, items: list) -> dict:
    return {"model": model, "benchmark": name, "sampling": dataclasses.asdict(sampling),
            "seed": int(cfg.experiment.seed), "require_think": bool(cfg.eval.require_think),
            "source": (cfg.eval.sources or {}).get(name), "items": len(items),
            "max_prompt_tokens": int(cfg.eval.max_prompt_tokens)}


def _units(out: Path, benches: dict, size: int) -> list[Unit]:
    return [Unit(name, i // size, items[i:i + size], S.shard_path(out, name, i // size))
            for name, (items, _) in benches.items() for i in range(0, len(items), size)]


def _batches(units: list[Unit], prompts: int) -> list[list[Unit]]:
    out, cur, n = [], [], 0
    for u in units:
        if cur and n + len(u.items) > prompts:
            out.append(cur)
            cur, n = [], 0
        cur.append(u)
        n += len(u.items)
    return out + ([cur] if cur else [])


def _rows(items: list, groups: list[list[dict]], scored: list[tuple[float, dict]]) -> list[dict]:
    rows, k = [], 0
    for it, grp in zip(items, groups):
        res = scored[k:k + len(grp)]
        k += len(grp)
        rows.append({"id": it.id, "benchmark": it.benchmark, "responses": [c["text"] for c in grp],
                     "rewards": [r for r, _ in res], "lengths": [int(len(c["ids"])) for c in grp],
                     "finish": [c["finish"] for c in grp], "info": [i for _, i in res]})
    return rows


def _metrics(rows: list[dict]) -> dict:
    from m2rl.eval import summarize

    m = summarize([r["rewards"] for r in rows], [r["lengths"] for r in rows],
                  [[f == "length" for f in r["finish"]] for r in rows])
    for key in PERCENT:
        m[key] = 100.0 * m[key]
    for key in ("pass_at_k", "pass_at_k_stderr"):
        m[key] = {k: 100.0 * v for k, v in m[key].items()}
    return {"score": m["avg_at_k"], **m}


def _finish(out: Path, target: Target, path: str, benches: dict, units: list[Unit], fps: dict, eval_run: str) -> dict:
    rows_by = {name: [] for name in benches}
    for u in units:
        shard = S.read_shard(u.path, fps[u.benchmark])
        if shard is None:
            raise RuntimeError(f"shard {u.path} vanished or changed while the eval ran")
        rows_by[u.benchmark] += shard["rows"]
    results = {"model_run": target.model_run, "model": path, "label": target.label, "arm": target.arm,
               "stage": target.stage, "eval_run": eval_run,
               "benchmarks": {n: _metrics(rows_by[n]) for n in benches},
               "sampling": {n: dataclasses.asdict(benches[n][1]) for n in benches},
               "fingerprints": fps}
    S.write_samples(out, [r for n in benches for r in rows_by[n]])
    from m2rl.runtime import atomic

    atomic.write_json(out / S.RESULTS, results)
    return results


def _specs(benches: dict):
    from m2rl.rollout.engine import SamplingSpec

    return {n: SamplingSpec(s.n, float(s.temperature), float(s.top_p), 0, int(s.max_tokens))
            for n, (_, s) in benches.items()}


def run(ctx: JobContext) -> dict:
    from m2rl import roles as R
    from m2rl.eval import reward_config, score_many
    from m2rl.rewards import Scorer
    from m2rl.sections import model_config
    from m2rl.train.batches import prompt_ids

    from .engine import EvalEngine

    cfg, e = ctx.cfg, ctx.cfg.eval
    names = benchmark_names(e)  # validated at launch and again in the job (m2rl.launch.run_task)
    targets = resolve(cfg)
    benches = _benchmarks(cfg, names)
    specs = _specs(benches)
    exp = experiment_dir(cfg)
    eval_run = f"eval/{cfg.run.name}"
    seed = int(cfg.experiment.seed)
    ctx.resume()
    engine = EvalEngine(e, max(s.max_new_tokens for s in specs.values()), seed, len(R.visible_gpus()))
    step, prompts, tokens, summary = 0, 0, 0, {}
    scorer = Scorer(workers=int(e.reward_workers), config=reward_config(bool(e.require_think)))
    try:
        for target in targets:
            path = target.path
            if path is None:
                from m2rl.models import prepare_model

                path = str(prepare_model(model_config(cfg)))
            out = exp / "eval" / target.slug
            model = S.model_fingerprint(path)
            fps = {n: _fingerprint(cfg, model, n, s, items) for n, (items, s) in benches.items()}
            units = _units(out, benches, int(e.shard_prompts))
            have = {u.path for u in units if S.read_shard(u.path, fps[u.benchmark]) is not None}
            todo = [u for u in units if u.path not in have]
            old = S.read_results(out)
            if not todo and old is not None and old.get("fingerprints") == fps:
                log.info("%s: every benchmark already evaluated (%s)", target.label, out / S.RESULTS)
                step += len(units)
                summary[target.label] = {n: b["score"] for n, b in old["benchmarks"].items()}
                continue
            step += len(units) - len(todo)
            if todo:
                llm = engine.for_model(path)
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(path)
                totals = {n: len(items) * specs[n].n for n, (items, _) in benches.items()}
                done = {n: sum(len(u.items) for u in units if u.benchmark == n and u.path in have) * specs[n].n
                        for n in benches}
                bar = Progress(totals, done, target.label)
                for batch in _batches(todo, int(e.batch_prompts)):
                    items = [it for u in batch for it in u.items]
                    ids = [prompt_ids(tok, it.messages)[-int(e.max_prompt_tokens):] for it in items]
                    groups = llm.stream(ids, [specs[it.benchmark] for it in items],
                                        [item_seed(seed, it.id) for it in items],
                                        on_done=lambda i, g: bar.add(items[i].benchmark, len(g)),
                                        should_stop=ctx.stop_requested)
                    if groups is None:
                        bar.close()
                        ctx.stop_now(step, lambda d: None)
                    flat_items = [it for it, g in zip(items, groups) for _ in g]
                    scored = score_many(flat_items, [c["text"] for g in groups for c in g], scorer=scorer)
                    k = cut = 0  # the unit's first prompt, and its first sample
                    for u in batch:
                        u_groups = groups[k:k + len(u.items)]
                        n_samples = sum(len(g) for g in u_groups)
                        S.write_shard(u.path, fps[u.benchmark], _rows(u.items, u_groups, scored[cut:cut + n_samples]))
                        k, cut = k + len(u.items), cut + n_samples
                    prompts += len(items)
                    tokens += sum(len(c["ids"]) for g in groups for c in g)
                    step += len(batch)
                    bar.log()
                    ctx.boundary(step, lambda d: None)
                bar.close()
            res = _finish(out, target, path, benches, units, fps, eval_run)
            summary[target.label] = {n: round(b["score"], 2) for n, b in res["benchmarks"].items()}
            log.info("%s: %s", target.label, ", ".join(f"{n} {v:.2f}" for n, v in summary[target.label].items()))
    finally:
        scorer.close()
        engine.close()
    return {"step": step, "prompts": prompts, "generated_tokens": tokens, "models": summary,
            "engine_starts": engine.starts, "weight_loads": engine.loads,
            "engine_start_s": round(engine.start_s, 2), "weight_load_s": round(engine.load_s, 2)}
