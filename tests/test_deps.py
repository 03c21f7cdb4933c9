"""M2RL_REQUIRE: a dependency CI needs that is missing stops the run by name, before any
test (a real pytest session in a subprocess, on the real probes)."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def _session(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                           str(REPO / "tests" / "test_deps.py")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_a_required_dependency_that_is_missing_fails_the_run_by_name(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = _session(tmp_path, M2RL_REQUIRE="bwrap,mergekit", PATH=str(empty),
                    M2RL_MERGEKIT_VENV=str(tmp_path / "no-venv"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert "bwrap: bwrap not on PATH" in out and "mergekit: " in out and "no-venv" in out


def test_an_unknown_name_is_refused_listing_the_valid_ones(tmp_path):
    proc = _session(tmp_path, M2RL_REQUIRE="vllm,cuda")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4 and "unknown cuda" in out and "slurm, vllm, mergekit, bwrap, smollm2" in out, out


def test_dependencies_that_are_here_pass(tmp_path):
    proc = _session(tmp_path, M2RL_REQUIRE="vllm,smollm2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
