"""The stage protocol: what every stage declares (see m2rl/jobs/README.md).

A stage module (`m2rl/jobs/<name>`) exposes `STAGE = Stage(...)`; the registry in
m2rl.jobs maps `stage.name` to it. Its module must import cheaply (no torch, no vLLM):
the launcher imports every stage to build the config schema. The body runs only inside
the job, and imports its heavy parts there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Layout:
    """The allocation a job gets, as resolved at launch (`cluster.*`): validation sees it
    before anything is submitted."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node

    @classmethod
    def of(cls, cfg) -> "Layout":
        c = cfg.cluster
        return cls(int(c.nodes), int(c.tasks_per_node), int(c.gpus_per_node), int(c.cpus_per_task))


@dataclass(frozen=True)
class Stage:
    """One kind of job.

    name      `stage.name`, and the run dir level `<exp>/<name>/<run.name>`
    run       the body, `run(ctx: m2rl.runtime.JobContext) -> dict` (its result lands in
              DONE.json and the attempt record)
    schema    the dataclass of the config section the stage owns (section = `name`), or
              None for a stage without options
    validate  `validate(cfg, layout)`, raising m2rl.errors.ConfigError naming the field and
              the fix; called for every job of a sweep before anything is submitted
    roles     `roles(cfg, layout) -> list[m2rl.roles.Role]` for a multi-role stage: the
              same plan validation checks and the job runs
    reads     what it takes (other runs' outputs, files), for the docs and the DAG
    writes    what it leaves in its run dir besides the runtime's files
    mutable   keys of its section that may change between launches of one run
    """

    name: str
    run: Callable[[Any], dict]
    schema: Optional[type] = None
    validate: Optional[Callable[[Any, Layout], None]] = None
    roles: Optional[Callable[[Any, Layout], list]] = None
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    mutable: tuple[str, ...] = ()
