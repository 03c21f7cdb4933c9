"""The stage protocol and the import graph it promises (m2rl/jobs/README.md).

Static checks read every module's imports (lazy ones inside functions too) with `ast`;
dynamic checks import a module alone in a fresh interpreter and look at sys.modules.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from m2rl import jobs
from m2rl.errors import ConfigError
from m2rl.stage import Layout, Stage

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "m2rl"


def _imports(path: Path) -> set[str]:
    """Every m2rl module a file imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package; an __init__'s is its own folder
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from m2rl.jobs import grpo` names a module too
    return {m for m in out if m == "m2rl" or m.startswith("m2rl.")}


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["m2rl", "jobs"] else None


def _modules(under: Path):
    for path in sorted(under.rglob("*.py")):
        yield path, ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_no_stage_imports_another_stage():
    bad = []
    for path, mod in _modules(PKG / "jobs"):
        mine = _stage_of(mod)
        if mine is None:
            continue
        for imp in _imports(path):
            other = _stage_of(imp)
            if other is not None and other != mine and f"m2rl.jobs.{other}" in jobs.REGISTRY.values():
                bad.append(f"{mod} imports {imp}")
    assert not bad, bad


def test_nothing_outside_the_stages_imports_a_stage():
    """Shared modules, the config, the runtime, ledger and report know no stage; only the
    entry points use the registry (`m2rl.jobs` itself)."""
    entry = {"m2rl.launch", "m2rl.sweep"}
    bad = []
    for path, mod in _modules(PKG):
        if mod.startswith("m2rl.jobs"):
            continue
        for imp in _imports(path):
            if _stage_of(imp) is not None or (imp == "m2rl.jobs" and mod not in entry):
                bad.append(f"{mod} imports {imp}")
    assert not bad, bad


def test_leaf_modules_import_nothing_of_m2rl():
    assert _imports(PKG / "errors.py") == set()
    assert _imports(PKG / "stage.py") == set()


def test_runtime_knows_no_job():
    for path, mod in _modules(PKG / "runtime"):
        outside = {i for i in _imports(path) if not i.startswith(("m2rl.runtime", "m2rl.errors"))}
        assert not outside, f"{mod} imports {outside}"


def test_eval_knows_no_stage():
    """m2rl.eval (benchmarks, scoring, metrics) is shared by stages, never the reverse."""
    for path, mod in _modules(PKG / "eval"):
        stages = {i for i in _imports(path) if i.startswith("m2rl.jobs")}
        assert not stages, f"{mod} imports {stages}"


ALONE = r"""
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("m2rl.jobs") or m in ("torch", "vllm", "deepspeed"))))
"""


def _loaded_by(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", ALONE, module], capture_output=True, text=True, timeout=120,
                         cwd=REPO, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_config_alone_loads_no_stage():
    assert _loaded_by("m2rl.config") == []


@pytest.mark.parametrize("name", list(jobs.REGISTRY))
def test_each_stage_module_imports_alone_and_cheaply(name):
    """Importing a stage (what the launcher does to build the schema) loads no other stage
    and none of torch, vLLM or DeepSpeed."""
    loaded = _loaded_by(jobs.REGISTRY[name])
    assert not {"torch", "vllm", "deepspeed"} & set(loaded), loaded
    others = {_stage_of(m) for m in loaded} - {None, name}
    assert not others, loaded


@pytest.mark.parametrize("name", list(jobs.REGISTRY))
def test_every_stage_declares_the_protocol(name):
    st = jobs.stage(name)
    assert isinstance(st, Stage) and st.name == name and callable(st.run)
    assert st.schema is None or dataclasses.is_dataclass(st.schema)
    assert st.writes, f"{name} says nothing of what it writes"
    if st.schema is not None:  # its section is in the schema, with the stage's defaults
        field = {f.name: f for f in dataclasses.fields(jobs.schema())}[name]
        assert field.default_factory() == st.schema()


def _cfg(*overrides):
    jobs.register()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("name", list(jobs.REGISTRY))
def test_every_stage_validates_its_default_config(name):
    assert jobs.validate(_cfg(f"stage={name}"), check_cluster=False).name == name


def test_stage_validation_sees_the_resolved_layout():
    """GRPO's role plan is checked against cluster.* before submission: two tasks and two
    rollout workers leave no learner."""
    cfg = _cfg("stage=grpo", "grpo.rollout_workers=2")
    assert Layout.of(cfg) == Layout(nodes=1, tasks_per_node=2, gpus_per_node=0, cpus_per_task=1)
    with pytest.raises(ConfigError, match="no learner") as err:
        jobs.validate(cfg, check_cluster=False)
    assert err.value.field == "grpo.rollout_workers"
    roles = jobs.stage("grpo").roles(_cfg("stage=grpo"), Layout.of(_cfg("stage=grpo")))
    assert [r.kind for r in roles] == ["learner", "rollout"]


@pytest.mark.parametrize("name", jobs.PLANNED)
def test_a_planned_stage_is_refused_before_submission(name):
    with pytest.raises(ConfigError, match="not built yet") as err:
        jobs.validate(_cfg(f"stage={name}"), check_cluster=False)
    assert err.value.field == "stage.name"
