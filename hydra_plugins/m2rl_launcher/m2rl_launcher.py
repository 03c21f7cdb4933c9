"""hydra-submitit-launcher's launchers, with m2rl's pre-submission plan in front.

Hydra only instantiates launchers from the `hydra_plugins` package, hence this thin
shim; the logic lives in m2rl.sweep.
"""

import contextlib
import copy
import signal
import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher


class _Planned:
    _CHECK_CLUSTER = False

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from m2rl.errors import ConfigError, ConfigMismatch
        from m2rl.launch import fail
        from m2rl.sweep import jobs_to_submit

        configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(o)) for o in job_overrides]
        try:
            keep = jobs_to_submit(configs, check_cluster=self._CHECK_CLUSTER)
        except (ConfigError, ConfigMismatch) as err:
            fail(err)
        if not keep:
            print("m2rl: every run of this sweep is finished: nothing to submit")
            return []
        return self._submit([job_overrides[i] for i in keep], initial_job_idx)

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        return super().launch(job_overrides, initial_job_idx)  # type: ignore[misc]


class M2RLLocalLauncher(_Planned, LocalLauncher):
    """One job after another: submitit's local executor gives every job all of the
    machine's CPUs and GPUs, so jobs run side by side would share (and collide on) the same
    devices, and each one's wall time, the ledger's cost, would include the others' load.

    Ctrl-C: the job processes ignore the terminal's SIGINT (configs/cluster/local.yaml
    starts submitit's controller under `trap '' INT`); this process takes it. A first
    Ctrl-C asks the running job to save at its next step boundary and end (a STOP file in
    its run dir), and no further job starts; a second one kills the job at once (its last
    checkpoint stays loadable). Either way the launch exits non-zero, saying that the same
    command resumes."""

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from m2rl.runtime import rundir

        load = self.hydra_context.config_loader.load_sweep_config
        runs = [rundir.run_dir(load(self.config, list(o))) for o in job_overrides]
        stop = _CtrlC()
        results = []
        with stop.installed():
            for i, (overrides, run) in enumerate(zip(job_overrides, runs)):
                if stop.presses:
                    break
                rundir.clear_stop(run)  # a request left over from an earlier launch
                stop.running = run
                results += LocalLauncher.launch(self, [overrides], initial_job_idx + i)
        if stop.presses:
            left = len(job_overrides) - len(results)
            raise SystemExit(f"m2rl: stopped by Ctrl-C ({stop.presses}x): {stop.running} saved and ended"
                             f"{f', {left} more job(s) not started' if left else ''}. Run the same command "
                             "again to resume (finished runs are skipped).")
        return results


class _CtrlC:
    """SIGINT in the local launcher: the first asks for a stop at the next step boundary,
    the second kills the running job's processes."""

    def __init__(self) -> None:
        self.presses = 0
        self.running = None

    @contextlib.contextmanager
    def installed(self):
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame) -> None:
        from m2rl.runtime import rundir

        self.presses += 1
        if self.presses == 1 and self.running is not None:
            rundir.request_stop(self.running)
            print(f"\nm2rl: Ctrl-C: {self.running} saves at its next step boundary and ends; no further job "
                  "starts. Ctrl-C again to stop at once.", file=sys.stderr, flush=True)
            return
        _kill_children()
        raise SystemExit(f"\nm2rl: stopped at once by a second Ctrl-C: {self.running} keeps its last checkpoint. "
                         "Run the same command again to resume.")


def _kill_children() -> None:
    """SIGKILL every process this launch started (submitit's controller and its tasks)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


class M2RLSlurmLauncher(_Planned, SlurmLauncher):
    """Each job gets the sbatch resources its own config resolves to. Hydra builds the
    launcher once per sweep, from the sweep's base config, so `-m cluster.cpus_per_task=1,4`
    would otherwise submit both jobs with the base value. Jobs with the same resources go
    out as one array; each different set is its own array, all submitted at once (submitit
    waits on each in a thread)."""

    _CHECK_CLUSTER = True

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        from m2rl.sweep import group_by_resources

        load = self.hydra_context.config_loader.load_sweep_config
        groups = group_by_resources([load(self.config, list(o)) for o in job_overrides])
        launches = []
        for params, idx in groups:
            clone = copy.copy(self)
            clone.params = params
            launches.append((clone, [job_overrides[i] for i in idx], initial_job_idx + idx[0]))
        if len(launches) == 1:
            clone, overrides, first = launches[0]
            return SlurmLauncher.launch(clone, overrides, first)
        with ThreadPoolExecutor(len(launches)) as pool:
            futures = [pool.submit(SlurmLauncher.launch, *launch) for launch in launches]
            return [ret for f in futures for ret in f.result()]


@dataclass
class M2RLLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.m2rl_launcher.m2rl_launcher.M2RLLocalLauncher"
    # shell lines run before submitit's local controller starts (its `local_setup`)
    setup: Optional[List[str]] = None


@dataclass
class M2RLSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.m2rl_launcher.m2rl_launcher.M2RLSlurmLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="m2rl_local", node=M2RLLocalConf(), provider="m2rl")
ConfigStore.instance().store(group="hydra/launcher", name="m2rl_slurm", node=M2RLSlurmConf(), provider="m2rl")
