"""Rollout engines: vLLM sampling with per-prompt seeds, weights replaced in place,
rewarded by the domain verifiers. Shared by every stage that generates (GRPO, and OPD and
eval as they land).

    engine.RolloutEngine    one vLLM engine (tensor_parallel_size GPUs, or the CPU);
                            `engine.weights` takes weight updates (m2rl.weightsync)
    worker.RolloutWorker    an engine + verifier processes, answering driver messages
    transport               the authenticated TCP channel driver <-> rollout tasks
    fleet                   the driver's view of all its workers (remote or in-process)
    start_worker(...)       an engine and its verifiers, started deaf to preemption notices
"""
from __future__ import annotations


def start_worker(model_path: str, gcfg, seed: int, on_gpu: bool, precision: str = "auto"):
    """A `RolloutWorker` on `model_path`: its engine and verifier processes are started
    with the preemption notices blocked, so that only the job's own process reacts."""
    from m2rl.rollout.engine import RolloutEngine, max_model_len
    from m2rl.rollout.worker import RolloutWorker
    from m2rl.runtime.preemption import children_deaf_to_preemption

    with children_deaf_to_preemption():
        engine = RolloutEngine(model_path, gcfg, seed=seed, max_model_len=max_model_len(model_path, gcfg),
                               on_gpu=on_gpu, precision=precision)
        worker = RolloutWorker(engine, gcfg)
        worker.start_verifiers()
    return worker
