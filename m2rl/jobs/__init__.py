"""Job bodies, one per stage. Each module exposes `run(ctx) -> dict` and may expose
`validate(cfg)` raising m2rl.config.ConfigError for its own section."""
from __future__ import annotations

import importlib

BODIES = {
    "toy": "m2rl.jobs.toy",
    "sft": "m2rl.jobs.sft",
    "grpo": "m2rl.jobs.grpo",
    "merge": "m2rl.jobs.merge",
    "opd": "m2rl.jobs.opd",
    "eval": "m2rl.jobs.eval",
    "report": "m2rl.jobs.report",
}


def body_module(stage: str):
    from m2rl.config import ConfigError

    try:
        return importlib.import_module(BODIES[stage])
    except ModuleNotFoundError as err:
        if err.name != BODIES.get(stage):
            raise
        raise ConfigError("stage.name", f"the {stage!r} job body is not built yet",
                          f"use one of the stages that exist: {', '.join(available())}") from None


def available() -> list[str]:
    return [s for s, mod in BODIES.items() if importlib.util.find_spec(mod) is not None]


def validate_stage(cfg) -> None:
    check = getattr(body_module(cfg.stage.name), "validate", None)
    if check is not None:
        check(cfg)
