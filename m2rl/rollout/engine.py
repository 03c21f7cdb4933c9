"""A vLLM engine that samples groups of responses: token ids and their log-probs, each
prompt with its own seed. Its weights are replaced in place through `engine.weights`
(m2rl.weightsync); `RolloutWorker` (worker.py) adds the verifiers and the message protocol.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from m2rl.weightsync.extension import EXTENSION, EngineWeights

log = logging.getLogger("m2rl.rollout")


@dataclass(frozen=True)
class SamplingSpec:
    n: int  # responses per prompt
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int


def sampling_spec(gcfg, evaluation: bool = False) -> SamplingSpec:
    """Training groups, or the held-out evaluation's samples (greedy when just one)."""
    n = int(gcfg.eval_samples) if evaluation else int(gcfg.group_size)
    if evaluation and n == 1:
        return SamplingSpec(1, 0.0, 1.0, 0, int(gcfg.max_new_tokens))
    return SamplingSpec(n, float(gcfg.temperature), float(gcfg.top_p), int(gcfg.top_k), int(gcfg.max_new_tokens))


def request_seeds(seed: int, step: int, n: int) -> list[int]:
    """The sampling seed of each of a step's prompts: a resumed run draws the same
    responses, whatever its engines ran before."""
    base = (seed * 1_000_003 + step * 10_007) % (2**31 - 1)
    return [(base + i * 7919) % (2**31 - 1) for i in range(n)]


def max_model_len(path: str, gcfg) -> int:
    """Prompt + response room, capped by the model's own context length."""
    import json

    want = int(gcfg.max_prompt_tokens) + int(gcfg.max_new_tokens)
    try:
        conf = json.loads((Path(path) / "config.json").read_text())
    except OSError:  # a hub id: vLLM knows
        return want
    text = conf.get("text_config", conf)
    return min(want, int(text.get("max_position_embeddings") or want))


def engine_dtype(precision: str, on_gpu: bool) -> str:
    if not on_gpu:
        return "float32"  # bf16 runs ~5x slower on a CPU without AVX-512
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(precision, "bfloat16")


class RolloutEngine:
    """One vLLM engine (tensor_parallel_size GPUs, or the CPU) with the weight-sync extension."""

    def __init__(self, model_dir: str, gcfg, seed: int, max_model_len: int, on_gpu: bool, precision: str = "auto"):
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(gcfg.cpu_kv_cache_gb)))
        from vllm import LLM

        t0 = time.time()
        kwargs = dict(model=str(model_dir), dtype=engine_dtype(precision, on_gpu), seed=seed,
                      max_model_len=max_model_len, worker_extension_cls=EXTENSION,
                      logprobs_mode="processed_logprobs", enable_prefix_caching=True,
                      enforce_eager=bool(gcfg.enforce_eager))
        if on_gpu:
            kwargs.update(tensor_parallel_size=int(gcfg.tensor_parallel_size),
                          gpu_memory_utilization=float(gcfg.gpu_memory_utilization))
        else:
            # Per-request seeds (reproducible rollouts) meet chunked prefill in vLLM's
            # generator-offset rewind, which CPU generators lack ('CPU Generator does not
            # use offset'): prefill whole prompts instead.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(4096, max_model_len))
        self.llm = LLM(**kwargs)
        self.weights = EngineWeights(self.llm)
        self.start_s = time.time() - t0
        log.info("vLLM engine up in %.1f s (%s)", self.start_s, kwargs["dtype"])

    def _params(self, prompt: list[int], spec: SamplingSpec, seed: int, logprobs: bool):
        """vLLM's SamplingParams of one prompt: its spec, its seed, the room left in the context."""
        from vllm import SamplingParams

        room = self.llm.llm_engine.model_config.max_model_len - len(prompt)
        return SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k,
                              max_tokens=max(1, min(spec.max_new_tokens, room)), seed=seed,
                              logprobs=0 if logprobs else None)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec, seeds: list[int]) -> list[list[dict]]:
        """For each prompt, `spec.n` completions: {"ids", "logprobs", "text", "finish"}.
        Each prompt samples with its own seed: the same prompts and seeds on the same
        weights give the same completions, whatever ran before (from an empty prefix
        cache, so that prefills are scheduled alike)."""
        self.llm.reset_prefix_cache()
        params = [self._params(p, spec, seed, logprobs=True) for p, seed in zip(prompts, seeds)]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        groups = []
        for out in outs:
            group = []
            for c, o in zip(completions(out), sorted(out.outputs, key=lambda o: o.index)):
                c["logprobs"] = sampled_logprobs(list(o.token_ids), o.logprobs)
                group.append(c)
            groups.append(group)
        return groups

    def stream(self, prompts: list[list[int]], specs: list[SamplingSpec], seeds: list[int],
               on_done=None, should_stop=None) -> list[list[dict]] | None:
        """Each prompt with its own sampling and seed (the eval job's benchmarks differ in
        K and length), in one batch; `on_done(i, group)` as prompt i finishes (its
        completions as `generate` gives them, without log-probs). `should_stop()` is
        polled between engine steps: when it says so the rest is aborted and None is
        returned, at once, not after the longest response."""
        self.llm.reset_prefix_cache()
        params = [self._params(p, s, seed, logprobs=False) for p, s, seed in zip(prompts, specs, seeds)]
        ids = self.llm.enqueue([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        # outputs carry the caller's id, which vLLM's internal one extends with "-<random>"
        index = {rid: i for i, rid in enumerate(ids)}
        index.update({rid.rsplit("-", 1)[0]: i for i, rid in enumerate(ids) if "-" in rid})
        groups: list[list[dict] | None] = [None] * len(prompts)
        engine = self.llm.llm_engine
        while engine.has_unfinished_requests():
            for out in engine.step():
                if not out.finished:
                    continue
                i = index[out.request_id]
                groups[i] = completions(out)
                if on_done is not None:
                    on_done(i, groups[i])
            if should_stop is not None and should_stop():
                engine.abort_request([rid for rid, i in index.items() if groups[i] is None and "-" not in rid]
                                     or [rid for rid, i in index.items() if groups[i] is None])
                while engine.has_unfinished_requests():
                    engine.step()
                return None
        return groups

    def close(self) -> None:
        """Stop the engine's processes now (not at interpreter exit): another engine may
        follow in this process."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm


def completions(out) -> list[dict]:
    """A finished request's completions in sample order: {"ids", "text", "finish"}."""
    return [{"ids": np.asarray(o.token_ids, dtype=np.int32), "text": o.text, "finish": o.finish_reason or ""}
            for o in sorted(out.outputs, key=lambda o: o.index)]


def sampled_logprobs(ids: list[int], logprobs) -> np.ndarray:
    """The engine's log-prob of each sampled token. Missing ones are an error: a zero would
    read as probability 1 and silently skew the importance weights."""
    if logprobs is None or len(logprobs) != len(ids):
        raise RuntimeError(f"the engine returned {'no' if logprobs is None else len(logprobs)} log-probs for "
                           f"{len(ids)} sampled tokens: request them (SamplingParams.logprobs=0)")
    try:
        return np.asarray([pos[t].logprob for t, pos in zip(ids, logprobs)], dtype=np.float32)
    except (KeyError, TypeError) as err:
        raise RuntimeError(f"the engine's log-probs lack a sampled token ({err!r})") from None


def spec_dict(spec: SamplingSpec) -> dict:
    return asdict(spec)
