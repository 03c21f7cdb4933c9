"""The error types every layer raises and the launcher reports. A leaf: imports nothing
of m2rl, so that config, runtime, stages and shared modules can all use it."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value, with the field it is in and how to fix it."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"config error in `{field}`: {problem}\n  fix: {fix}")


class ConfigMismatch(RuntimeError):
    """Relaunching into a run dir whose saved config differs (see m2rl.runtime.rundir)."""


class RoleError(ValueError):
    """A role plan that does not fit the allocation (see m2rl.roles)."""
