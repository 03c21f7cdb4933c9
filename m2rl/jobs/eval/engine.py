"""One vLLM engine for a whole eval job: the next model of the same architecture and
tokenizer is loaded into the running engine (its safetensors files, read by each engine
worker), so evaluating N fine-tunes of one base pays one engine start, not N."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger("m2rl.eval")
# config.json keys that do not change the architecture (an export turns use_cache off)
_NOT_ARCH = {"_name_or_path", "transformers_version", "use_cache"}
# the vocabulary the engine decodes with (each model's prompts are built by its own tokenizer)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model")


def architecture(path: str) -> str | None:
    """What must match for weights to go into a running engine: config.json (less its
    bookkeeping keys) and the tokenizer files; None for a hub id (it is restarted)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        return None
    conf = {k: v for k, v in json.loads((p / "config.json").read_text()).items() if k not in _NOT_ARCH}
    h = hashlib.sha256(json.dumps(conf, sort_keys=True).encode())
    for name in _TOKENIZER_FILES:
        if (p / name).is_file():
            h.update(name.encode() + (p / name).read_bytes())
    return h.hexdigest()


def weight_files(path: str) -> list[str]:
    return [str(f) for f in sorted(Path(path).glob("*.safetensors"))]


class EvalEngine:
    """`for_model(path)` -> the running RolloutEngine with that model's weights."""

    def __init__(self, e, max_new_tokens: int, seed: int, gpus: int):
        self.e, self.seed, self.gpus = e, seed, gpus
        self.settings = SimpleNamespace(
            cpu_kv_cache_gb=int(e.cpu_kv_cache_gb), enforce_eager=bool(e.enforce_eager),
            tensor_parallel_size=int(e.tensor_parallel_size or max(1, gpus)),
            gpu_memory_utilization=float(e.gpu_memory_utilization),
            max_prompt_tokens=int(e.max_prompt_tokens), max_new_tokens=int(max_new_tokens))
        self.engine = None
        self.arch: str | None = None
        self.starts = 0
        self.loads = 0
        self.start_s = 0.0
        self.load_s = 0.0

    def for_model(self, path: str):
        from m2rl.rollout.engine import RolloutEngine, max_model_len
        from m2rl.runtime.preemption import children_deaf_to_preemption

        arch = architecture(path)
        if self.engine is not None and arch is not None and arch == self.arch and weight_files(path):
            t0 = time.time()
            self.engine.weights.load_files(weight_files(path))
            self.loads += 1
            self.load_s += time.time() - t0
            log.info("loaded %s into the running engine in %.1f s", path, time.time() - t0)
            return self.engine
        self.close()
        t0 = time.time()
        with children_deaf_to_preemption():  # the notice is this process's to handle, not the engine's
            self.engine = RolloutEngine(path, self.settings, self.seed, max_model_len(path, self.settings),
                                        on_gpu=self.gpus > 0, precision=str(self.e.precision))
        self.arch = arch
        self.starts += 1
        self.start_s += time.time() - t0
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine, self.arch = None, None
