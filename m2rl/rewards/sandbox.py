"""Run untrusted Python in a sandbox: one fresh process tree per run.

Every run gets a fresh temp dir (its only writable place), stdin/stdout/stderr as files in
it, and these limits, set with util-linux `prlimit` on the whole tree: CPU seconds,
address space, file size (which also caps the output: a write past it kills the
process), open files and, for a unique unprivileged uid, the number of processes. A wall
clock timeout kills everything. Isolation, best first (`isolation()` says which):

* `bwrap` (root + bubblewrap): new pid, net, ipc and uts namespaces (no network, sees
  and can signal only its own processes), a read-only view of /usr and the interpreter
  only (no /etc, /home, /root, /work...), a private /tmp, capabilities dropped and a
  unique unprivileged uid (so the process limit holds and host files stay unreadable).
* `bwrap-user` (non-root + bubblewrap with user namespaces): the same namespaces and
  filesystem view under the caller's uid; the process limit counts the caller's own
  processes, so it is raised by their number.
* `rlimits` (no bubblewrap): limits, own session and process group, and a unique
  unprivileged uid when root; no namespace, so the network and readable host files are
  not hidden. A warning says so.
"""
from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 4096
    output_bytes: int = 1 << 20
    nproc: int = 64
    nofile: int = 64


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    output_capped: bool


def _base_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@functools.lru_cache(maxsize=None)
def isolation() -> str:
    if shutil.which("bwrap") and shutil.which("prlimit"):
        mode = "bwrap" if os.geteuid() == 0 else "bwrap-user"
        probe = subprocess.run(
            _bwrap_argv(mode, "/", 0) + ["/bin/true"], capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            return mode
        log.warning("bubblewrap cannot start here (%s)", probe.stderr.decode()[-300:])
    log.warning(
        "code sandbox: no bubblewrap; running with rlimits only (no network or filesystem"
        " isolation). Install bubblewrap (apt-get install bubblewrap)."
    )
    return "rlimits"


def _bwrap_argv(mode: str, workdir: str, uid: int) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if mode == "bwrap-user":
        argv.append("--unshare-user")
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr"):
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--bind", workdir, "/sandbox", "--chdir", "/sandbox", "--proc", "/proc",
             "--dev", "/dev", "--tmpfs", "/tmp", "--clearenv",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
             "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    if mode == "bwrap":
        argv += ["--cap-add", "CAP_SETUID,CAP_SETGID", "--", *_drop_to(uid)]
    else:
        argv += ["--"]
    return argv


def _drop_to(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def _uid_tasks(uid: int) -> dict[int, int]:
    """pid -> thread count of every process whose real uid is `uid`."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            found[int(entry.name)] = int(fields.get("Threads", "1"))
    return found


def _kill_all(proc: subprocess.Popen, uid: int | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:  # a unique uid: anything still running as it is ours to kill
        for _ in range(3):
            pids = _uid_tasks(uid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)


def _read_capped(f, cap: int) -> tuple[str, bool]:
    """Read back through our own open file: the sandbox may have swapped the path."""
    f.seek(0)
    data = f.read(cap + 1)
    return data[:cap].decode("utf-8", "replace"), len(data) > cap


def run_python(code: str, stdin: str = "", limits: Limits | None = None) -> RunResult:
    """Run `code` as a script with `stdin`; never raises for anything the code does."""
    limits = limits or Limits()
    mode = isolation()
    root = os.geteuid() == 0
    uid = random.randrange(200_000, 2_000_000_000) if root else None
    work = Path(tempfile.mkdtemp(prefix="m2rl-sbx-"))
    try:
        (work / "solution.py").write_text(code)
        (work / "stdin.txt").write_text(stdin)
        if uid is not None:
            os.chown(work, uid, uid)
        work.chmod(0o700)
        nproc = limits.nproc
        if not root:
            nproc += sum(_uid_tasks(os.getuid()).values())  # counted per real uid, threads too
        mem = limits.memory_mb << 20
        argv = ["prlimit", f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}", f"--as={mem}:{mem}",
                f"--fsize={limits.output_bytes + 1}", f"--nofile={limits.nofile}",
                f"--nproc={nproc}", "--core=0", "--"]
        python = [_base_python(), "-I", "-S", "-B", "solution.py"]
        if mode == "rlimits":
            argv += (_drop_to(uid) if uid is not None else []) + python
        else:
            argv += _bwrap_argv(mode, str(work), uid or 0) + python
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}
        with open(work / "stdin.txt", "rb") as fin, open(work / "stdout.txt", "w+b") as fout, \
                open(work / "stderr.txt", "w+b") as ferr:
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=work,
                                    env=env, start_new_session=True, close_fds=True)
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_all(proc, uid)
                proc.wait()
            wall = time.monotonic() - t0
            out, capped = _read_capped(fout, limits.output_bytes)
            err, _ = _read_capped(ferr, 64 << 10)
        return RunResult(None if timed_out else proc.returncode, out, err, timed_out, wall,
                         capped)
    finally:
        shutil.rmtree(work, ignore_errors=True)
