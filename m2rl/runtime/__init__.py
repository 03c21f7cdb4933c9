"""The job runtime: checkpoints, preemption, time limits and attempt records.

Job bodies depend on this package; it depends on no job body.
"""
from .checkpoint import Checkpoint, CheckpointManager
from .dist import DistEnv
from .job import Interrupted, JobContext, run_job

__all__ = ["Checkpoint", "CheckpointManager", "DistEnv", "Interrupted", "JobContext", "run_job"]
