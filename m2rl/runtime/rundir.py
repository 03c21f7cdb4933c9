"""Deterministic run directories: `<root>/<experiment>/<stage>/<run.name>`.

The same command always maps to the same directory, so a relaunch finds its runs: a
finished one (DONE.json present) is skipped, an unfinished one resumes from its
checkpoints. The resolved config is saved beside the run; relaunching into a run with a
different config is refused unless `run.allow_config_change=true`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from m2rl.errors import ConfigMismatch  # noqa: F401  (raised here, re-exported)

from . import atomic

CONFIG_FILE = "config.yaml"
DONE_FILE = "DONE.json"
STOP_FILE = "STOP"  # a stop request: save at the next step boundary, end, no requeue
# Sections that may change between launches of one run: where and how it runs, not what.
# A stage adds keys of its own section (`Stage.mutable`), passed in as `mutable`.
MUTABLE = ("cluster", "paths", "run.allow_config_change", "hydra")


def slug(name) -> str:
    """A run name from a model or a path: `grpo/math` -> `grpo-math`, `/x/y/export` -> `y`,
    `Qwen/Qwen3-4B` -> `Qwen-Qwen3-4B`; a list joins its items' with `+` (a hash when that
    is long). One directory level, the same for the same name."""
    if isinstance(name, (list, tuple)) or (hasattr(name, "__iter__") and not isinstance(name, str)):
        joined = "+".join(slug(n) for n in name)
        return joined if len(joined) <= 80 else "models-" + hashlib.sha256(joined.encode()).hexdigest()[:10]
    p = Path(str(name))
    if p.name == "export" and p.parent.name:
        p = p.parent
    text = p.name if p.is_absolute() or str(name).startswith((".", "~")) else str(p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


# `run.name: ${m2rl.slug:${eval.model}}` (configs/stage/eval.yaml)
OmegaConf.register_new_resolver("m2rl.slug", slug, replace=True)


def experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.root).absolute() / cfg.experiment.name


def run_dir(cfg: DictConfig) -> Path:
    return experiment_dir(cfg) / cfg.stage.name / str(cfg.run.name)


EXPORT_DIR = "export"  # where a run leaves its model (Hugging Face format)
MODEL_STAGES = ("sft", "grpo", "merge", "opd")  # the stages whose runs export one, in the study's order


def is_run_key(name) -> bool:
    """`sft/multi`, `grpo/math`, ...: a run of the experiment, not a path that exists."""
    head, _, tail = str(name).partition("/")
    return head in MODEL_STAGES and bool(tail) and "/" not in tail and not Path(str(name)).exists()


def run_export(exp: Path, key: str) -> Path:
    """The export dir of the run `<stage>/<run>` of the experiment at `exp`."""
    return Path(exp) / key / EXPORT_DIR


def has_model(d) -> bool:
    return (Path(d) / "config.json").is_file()


def arm(cfg: DictConfig) -> str:
    """Which arm of the mix-or-merge comparison a run pays into."""
    stage, domain = cfg.stage.name, cfg.domain.name
    if stage in ("grpo", "merge"):
        return "mixed" if (stage == "grpo" and domain == "multi") else "separate"
    return {"opd": "opd", "sft": "base", "eval": "eval", "report": "report"}.get(stage, stage)


def identity(cfg: DictConfig) -> dict:
    return {"experiment": cfg.experiment.name, "stage": cfg.stage.name, "domain": cfg.domain.name,
            "run_name": str(cfg.run.name), "arm": arm(cfg), "run_dir": str(run_dir(cfg))}


def _plain(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node (which only resolves inside a job)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def _comparable(cfg: DictConfig, mutable: tuple[str, ...] = ()) -> dict:
    data = _plain(cfg)
    for key in (*MUTABLE, *mutable):
        head, _, tail = key.partition(".")
        if tail and isinstance(data.get(head), dict):
            data[head].pop(tail, None)
        elif not tail:
            data.pop(head, None)
    return data


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


@dataclass
class RunState:
    path: Path
    done: bool
    exists: bool


def inspect(cfg: DictConfig, mutable: tuple[str, ...] = ()) -> RunState:
    """Where the run is, whether it finished, and refuse a mismatching config (keys in
    MUTABLE and `mutable` may differ)."""
    path = run_dir(cfg)
    saved = path / CONFIG_FILE
    if saved.is_file() and not cfg.run.allow_config_change:
        old = _comparable(OmegaConf.load(saved), mutable)
        diffs = _diff(old, _comparable(cfg, mutable))
        if diffs:
            raise ConfigMismatch(
                f"run dir {path} holds a run with a different config:\n  " + "\n  ".join(diffs[:20])
                + "\n  fix: use another experiment.name (or run.name), delete that run dir, or pass "
                "run.allow_config_change=true to resume it with the new config")
    return RunState(path, (path / DONE_FILE).is_file(), saved.is_file())


def save_config(cfg: DictConfig, path: Path) -> None:
    atomic.write_text(path / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(_plain(cfg))))


def mark_done(path: Path, result: dict) -> None:
    atomic.write_json(path / DONE_FILE, result)


def request_stop(path: Path) -> None:
    """Ask the job running in `path` to save at its next step boundary and end, without a
    requeue (what the local launcher does on a first Ctrl-C)."""
    if Path(path).is_dir():
        atomic.write_text(Path(path) / STOP_FILE, "stop requested\n")


def stop_requested(path: Path) -> bool:
    return (Path(path) / STOP_FILE).exists()


def clear_stop(path: Path) -> None:
    (Path(path) / STOP_FILE).unlink(missing_ok=True)


def read_done(path: Path) -> dict | None:
    p = Path(path) / DONE_FILE
    return json.loads(p.read_text()) if p.is_file() else None
