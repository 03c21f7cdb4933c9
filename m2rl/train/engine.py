"""A DeepSpeed engine from a model and the engine/optimizer config.

The optimizer is torch's AdamW by default (DeepSpeed's own Adam kernels compile on first
use), handed to DeepSpeed together with the warmup+cosine LambdaLR, so both travel in the
engine's checkpoints and DeepSpeed steps them at accumulation boundaries. Precision
`auto` is bf16 on GPU and fp32 on CPU.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from m2rl.train.config import EngineConfig, OptimConfig
from m2rl.train.schedule import scheduler

log = logging.getLogger("m2rl.train")


def resolve_precision(precision: str, device_type: str) -> str:
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}")
    return precision


def ds_config(engine: EngineConfig, optim: OptimConfig, world_size: int, precision: str) -> dict:
    """The DeepSpeed config dict for these settings (optimizer and scheduler are objects)."""
    zero: dict = {"stage": int(engine.zero_stage)}
    if engine.zero_stage >= 1 and engine.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if engine.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    conf = {
        "train_micro_batch_size_per_gpu": int(engine.micro_batch_size),
        "gradient_accumulation_steps": int(engine.grad_accum),
        "train_batch_size": int(engine.micro_batch_size) * int(engine.grad_accum) * world_size,
        "gradient_clipping": float(optim.grad_clip),
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # m2rl logs; DeepSpeed stays quiet
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        conf["bf16"] = {"enabled": True}
    elif precision == "fp16":
        conf["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return conf


@contextmanager
def partitioned_init(engine: EngineConfig, optim: OptimConfig):
    """Under ZeRO-3, models loaded inside this block (transformers' from_pretrained) are
    built partitioned across the ranks (deepspeed.zero.Init), each rank reading only its
    shard: no rank ever holds a full fp32 copy. A no-op for ZeRO 0-2."""
    if int(engine.zero_stage) != 3:
        with nullcontext():
            yield
        return
    import torch.distributed as td
    from transformers.integrations import HfDeepSpeedConfig

    from m2rl.train.distributed import device

    world = td.get_world_size() if td.is_initialized() else 1
    conf = ds_config(engine, optim, world, resolve_precision(engine.precision, device().type))
    keep = HfDeepSpeedConfig(conf)  # transformers reads it through a weak reference while it lives
    try:
        yield
    finally:
        del keep


def make_optimizer(params, engine: EngineConfig, optim: OptimConfig):
    import torch

    kwargs = dict(lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay)
    if engine.optimizer == "torch":
        return torch.optim.AdamW(params, **kwargs)
    if engine.optimizer == "deepspeed":  # compiles its kernel the first time (45-85 s on CPU)
        if engine.offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return DeepSpeedCPUAdam(params, adamw_mode=True, **kwargs)
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam(params, adam_w_mode=True, **kwargs)
    raise ValueError(f"unknown optimizer {engine.optimizer!r} (torch or deepspeed)")


@dataclass
class EngineInfo:
    precision: str
    zero_stage: int
    world_size: int
    init_s: float  # deepspeed.initialize wall time
    config: dict


def build_engine(model, engine: EngineConfig, optim: OptimConfig, total_steps: int):
    """Wrap `model` (already on the CPU; DeepSpeed moves it) in a DeepSpeed engine.

    Call init_distributed() first. Returns (engine, EngineInfo). The engine's scheduler
    is the warmup+decay LambdaLR over `total_steps` optimizer steps.
    """
    import deepspeed
    import torch.distributed as td

    from m2rl.train.distributed import device

    precision = resolve_precision(engine.precision, device().type)
    world = td.get_world_size() if td.is_initialized() else 1
    conf = ds_config(engine, optim, world, precision)
    if engine.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, engine, optim)
    sched = scheduler(opt, optim, total_steps)
    t0 = time.time()
    ds_engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config=conf)
    if not (precision != "fp32" or ds_engine.zero_optimization()):
        _record_clip_norm(ds_engine)
    info = EngineInfo(precision, int(engine.zero_stage), world, time.time() - t0, conf)
    if ds_engine.global_rank == 0:
        log.info("DeepSpeed engine: ZeRO-%d, %s, %d process(es), micro batch %d x accum %d; init %.1f s",
                 info.zero_stage, precision, world, engine.micro_batch_size, engine.grad_accum, info.init_s)
    return ds_engine, info


def _record_clip_norm(ds_engine) -> None:
    """Without ZeRO and in fp32 DeepSpeed clips with torch's norm but keeps no grad norm
    (`get_global_grad_norm()` stays None): clip the same way and keep the norm."""
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip() -> None:
        ds_engine._global_grad_norm = clip_grad_norm_(parameters=ds_engine.module.parameters(),
                                                      max_norm=ds_engine.gradient_clipping(), mpu=ds_engine.mpu)

    ds_engine.clip_fp32_gradients = clip


def current_lr(ds_engine) -> float:
    return float(ds_engine.get_lr()[0])


def grad_norm(ds_engine) -> float | None:
    """The global grad norm of the last optimizer step (before clipping)."""
    norm = ds_engine.get_global_grad_norm()
    if norm is None:
        return None
    return float(norm.item() if hasattr(norm, "item") else norm)
