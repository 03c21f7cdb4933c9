"""Read an experiment's job-side ledger: every run dir and every attempt record in it.

Layout (written by `m2rl.runtime`): `<exp>/<stage>/<run_name>/` holds `config.yaml`,
`DONE.json` when finished, and `attempts/attempt-NNNN.json`, one file per attempt. A
file that cannot be used (empty, not JSON, wrong fields) becomes a `Problem`: reported,
skipped, never silently dropped.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2rl.runtime.attempts import ATTEMPTS_DIR
from m2rl.runtime.rundir import CONFIG_FILE, DONE_FILE

RESULTS_FILE = "results.json"
# Never walked into: checkpoints and TensorBoard logs can hold thousands of files.
_PRUNE = {"checkpoints", "tb", ATTEMPTS_DIR, "plots", "__pycache__"}
_RUN_DEPTH = 2  # <exp>/<stage>/<run>, as m2rl.runtime.rundir lays them out

# The batch and group size of a run, under whatever name its stage section uses.
BATCH_KEYS = ("prompts_per_step", "rollout_batch_size", "batch_size", "global_batch_size", "train_batch_size")
ROLLOUT_KEYS = ("rollouts_per_prompt", "n_samples_per_prompt", "group_size", "num_generations", "rollouts")


@dataclass
class Problem:
    path: str
    kind: str  # empty | corrupt | invalid | unreadable
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}"


@dataclass
class RunInfo:
    key: str                      # "<stage>/<run_name>", the run's path inside the experiment
    path: Path
    stage: str
    domain: str | None
    run_name: str
    arm: str
    config: dict | None = None
    done: dict | None = None
    attempts: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.done is not None

    def section(self) -> dict:
        cfg = self.config or {}
        sec = cfg.get(self.stage)
        return sec if isinstance(sec, dict) else {}

    def _lookup(self, keys: tuple[str, ...]) -> Any:
        for source in (self.done or {}, self.section()):
            for k in keys:
                v = source.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    return v
        return None

    @property
    def batch(self) -> int | None:
        return self._lookup(BATCH_KEYS)

    @property
    def rollouts(self) -> int | None:
        return self._lookup(ROLLOUT_KEYS)

    @property
    def steps(self) -> int | None:
        """Steps the run reached: DONE.json's `step`, else the furthest attempt."""
        v = (self.done or {}).get("step")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
        ends = [a.get("step_end") or 0 for a in self.attempts]
        return max(ends) if ends else None

    @property
    def configured_gpus(self) -> int | None:
        c = (self.config or {}).get("cluster") or {}
        g, n = c.get("gpus_per_node"), c.get("nodes") or 1
        return int(g) * int(n) if isinstance(g, int) else None

    @property
    def prompts(self) -> tuple[float | None, bool]:
        """(prompts trained on, measured?): DONE.json's `prompts`, else batch x steps."""
        v = (self.done or {}).get("prompts")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v), True
        if self.batch and self.steps:
            return float(self.batch * self.steps), False
        return None, False

    @property
    def learning_signal(self) -> dict | None:
        """An RL run's zero-advantage and verifier-failure counts (DONE.json, m2rl.rl.signal)."""
        v = (self.done or {}).get("learning_signal")
        return v if isinstance(v, dict) else None

    @property
    def generated_tokens(self) -> float | None:
        v = (self.done or {}).get("generated_tokens")
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Scan:
    exp_dir: Path
    runs: dict[str, RunInfo]
    problems: list[Problem]
    results: list[tuple[Path, dict]]  # eval results.json files (parsed), see m2rl.report.evals

    @property
    def attempts(self) -> list[tuple[RunInfo, dict]]:
        return [(r, a) for r in self.runs.values() for a in r.attempts]


class NoExperiment(Exception):
    """The directory is missing, or holds no run: a message for the user, not a traceback."""


def _arm(stage: str, domain: str | None) -> str:
    """The runtime's rule (m2rl.runtime.rundir.arm), for runs whose records do not say."""
    from types import SimpleNamespace as NS

    from m2rl.runtime.rundir import arm

    return arm(NS(stage=NS(name=stage), domain=NS(name=domain)))


def _load_yaml(path: Path, problems: list[Problem]) -> dict | None:
    if not path.is_file():
        return None
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
        return data if isinstance(data, dict) else None
    except Exception as err:  # a broken config only costs the run its batch/rollout columns
        problems.append(Problem(str(path), "corrupt", f"config not readable ({err}); batch and rollouts unknown"))
        return None


def load_json(path: Path, problems: list[Problem], what: str) -> dict | None:
    try:
        text = path.read_text()
    except OSError as err:
        problems.append(Problem(str(path), "unreadable", f"{what}: {err}"))
        return None
    if not text.strip():
        problems.append(Problem(str(path), "empty", f"{what} is empty"))
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(Problem(str(path), "corrupt", f"{what} is not valid JSON ({err})"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "invalid", f"{what} is a JSON {type(data).__name__}, not an object"))
        return None
    return data


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# field -> (accepted check, description); absent optional fields get their defaults.
_REQUIRED = {"attempt": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
             "executor": (lambda v: isinstance(v, str) and v != "", "a string"),
             "start_time": (_num, "a number (epoch seconds)")}
_OPTIONAL_NUM = ("end_time", "heartbeat", "first_step_time", "last_checkpoint_time", "signal_time",
                 "mean_step_s", "lost_work_s")
_OPTIONAL_INT = ("restart_count", "nodes", "gpus", "cpus", "world_size", "step_start", "step_end",
                 "last_checkpoint_step", "array_task_id")
_DEFAULTS = {"restart_count": 0, "nodes": 1, "gpus": 0, "cpus": 1, "world_size": 1, "step_start": 0, "step_end": 0,
             "state": "running", "exit_reason": "", "run": {}}


def validate_attempt(rec: dict) -> str | None:
    """Why an attempt record cannot be used, or None."""
    for key, (ok, desc) in _REQUIRED.items():
        if key not in rec:
            return f"missing field {key!r}"
        if not ok(rec[key]):
            return f"field {key!r} should be {desc}, got {rec[key]!r}"
    for key in _OPTIONAL_NUM:
        if rec.get(key) is not None and not _num(rec[key]):
            return f"field {key!r} should be a number or null, got {rec[key]!r}"
    for key in _OPTIONAL_INT:
        v = rec.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
            return f"field {key!r} should be an integer, got {v!r}"
    if not isinstance(rec.get("run", {}), dict):
        return f"field 'run' should be an object, got {rec['run']!r}"
    for key in ("job_id", "slurm_job_id", "array_job_id"):
        v = rec.get(key)
        if v is not None and not isinstance(v, (str, int)):
            return f"field {key!r} should be a string, got {v!r}"
    return None


def normalise_attempt(rec: dict) -> dict:
    out = {**_DEFAULTS, **{k: v for k, v in rec.items() if v is not None or k not in _DEFAULTS}}
    for key in ("job_id", "slurm_job_id", "array_job_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    out["steps_done"] = max(0, (out.get("step_end") or 0) - (out.get("step_start") or 0))
    return out


def _is_run_dir(names: set[str]) -> bool:
    return ATTEMPTS_DIR in names or CONFIG_FILE in names or DONE_FILE in names or RESULTS_FILE in names


def _find_run_dirs(exp: Path) -> list[Path]:
    found = []
    base_depth = len(exp.parts)
    for dirpath, dirnames, filenames in os.walk(exp):
        here = Path(dirpath)
        depth = len(here.parts) - base_depth
        names = set(dirnames) | set(filenames)
        if depth == _RUN_DEPTH:
            if _is_run_dir(names):
                found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _PRUNE)
    return sorted(found)


def scan(exp_dir: str | Path) -> Scan:
    """Every run of the experiment with its valid attempt records; problems for the rest."""
    exp = Path(exp_dir)
    if not exp.exists():
        raise NoExperiment(f"no experiment directory at {exp} (expected <paths.root>/<experiment.name>)")
    if not exp.is_dir():
        raise NoExperiment(f"{exp} is a file, not an experiment directory")
    problems: list[Problem] = []
    runs: dict[str, RunInfo] = {}
    results: list[tuple[Path, dict]] = []
    for path in _find_run_dirs(exp):
        rel = path.relative_to(exp)
        stage, run_name = rel.parts[0], "/".join(rel.parts[1:])
        config = _load_yaml(path / CONFIG_FILE, problems)
        done = load_json(path / DONE_FILE, problems, "DONE.json") if (path / DONE_FILE).exists() else None
        if (path / RESULTS_FILE).exists():
            res = load_json(path / RESULTS_FILE, problems, "eval results")
            if res is not None:
                results.append((path, res))
        attempts = []
        adir = path / ATTEMPTS_DIR
        if adir.is_dir():
            for p in sorted(adir.glob("attempt-*.json")):
                rec = load_json(p, problems, "attempt record")
                if rec is None:
                    if problems[-1].kind == "empty":
                        problems[-1].message += (" (m2rl's runtime never publishes an empty record: written by"
                                                 " an older runtime or another tool, or damaged on disk)")
                    continue
                why = validate_attempt(rec)
                if why:
                    problems.append(Problem(str(p), "invalid", f"attempt record: {why}"))
                    continue
                rec = normalise_attempt(rec)
                rec["_file"] = str(p)
                attempts.append(rec)
        ident = next((a["run"] for a in attempts if a.get("run")), {})
        cfg_stage = ((config or {}).get("stage") or {}).get("name")
        cfg_domain = ((config or {}).get("domain") or {}).get("name")
        stage = ident.get("stage") or cfg_stage or stage
        domain = ident.get("domain") or cfg_domain
        arm = ident.get("arm") or _arm(stage, domain)
        if not attempts and config is None and done is None:
            continue  # e.g. an eval dir with only results.json: not a run that cost anything we know of
        runs[str(rel)] = RunInfo(key=str(rel), path=path, stage=stage, domain=domain, run_name=run_name, arm=arm,
                                 config=config, done=done, attempts=sorted(attempts, key=lambda a: a["start_time"]))
    if not runs and not results:
        hint = ""
        deeper = [p for p in exp.glob("*/*/*/attempts") if p.is_dir()]
        if deeper:
            names = sorted({p.relative_to(exp).parts[0] for p in deeper})
            hint = (f"; it looks like paths.root: pass one experiment dir, e.g. {exp / names[0]}"
                    f" (experiments here: {', '.join(names[:10])})")
        raise NoExperiment(f"{exp} holds no runs (no <stage>/<run>/attempts/attempt-*.json, config.yaml or "
                           f"DONE.json){hint}")
    return Scan(exp, runs, problems, results)
