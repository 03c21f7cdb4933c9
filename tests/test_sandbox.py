"""The code sandbox against hostile snippets: each is contained, scores 0, the host is fine.

Each snippet prints the expected output "pwned" only if its attack worked, so a reward of
0 means the attack failed (or the run was killed); the host-side checks follow each one.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from deps import requires
from m2rl.rewards import code
from m2rl.rewards.sandbox import Limits, isolation, run_python

pytestmark = requires("bwrap")
SPEC = {"tests": [{"input": "", "output": "pwned\n"}], "time_limit_s": 3}


def _score(snippet: str, spec=SPEC) -> tuple[float, dict]:
    return code.verify(f"```python\n{snippet}\n```", spec)


def _sandbox_procs() -> dict:
    if os.geteuid() != 0:
        return {}
    return {pid: n for pid, n in ((p, _uid_tasks_of(p)) for p in _all_pids()) if n}


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _uid_tasks_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return 0
    return 1 if uid >= 200_000 else 0  # the sandbox's unique uids


def test_namespaces_are_in_use():
    assert isolation() in ("bwrap", "bwrap-user")


def test_a_plain_solution_passes():
    reward, info = _score("print('pwned')")
    assert reward == 1.0 and info["pass_fraction"] == 1.0


def test_fork_bomb():
    t0 = time.monotonic()
    reward, info = _score("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert reward == 0.0
    assert time.monotonic() - t0 < 15
    time.sleep(0.2)
    assert _sandbox_procs() == {}  # nothing left running
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes


def test_process_limit_holds():
    snippet = ("import os, time\nn = 0\nfor _ in range(500):\n    try:\n        if os.fork() == 0:\n"
               "            time.sleep(20)\n            os._exit(0)\n        n += 1\n    except OSError:\n"
               "        break\nprint('pwned' if n >= 500 else n)")
    res = run_python(snippet, "", Limits(wall_s=5, nproc=32))
    assert res.stdout.strip() != "pwned" and int(res.stdout) < 32
    assert _sandbox_procs() == {}


def test_infinite_loop():
    t0 = time.monotonic()
    spec = {"tests": SPEC["tests"] * 3, "time_limit_s": 2}
    reward, info = _score("while True:\n    pass", spec)
    assert reward == 0.0 and info["error"] == "timeout"
    assert info["skipped_after_timeout"] == 2  # the other tests are not run into the limit
    assert time.monotonic() - t0 < 2 + 5


def test_cpu_limit_without_wall_timeout():
    res = run_python("while True:\n    pass", "", Limits(wall_s=30, cpu_s=1))
    assert not res.timed_out and res.returncode != 0 and res.wall_s < 10


def test_10gb_allocation():
    reward, info = _score("x = bytearray(10 * 1024 ** 3)\nprint('pwned')")
    assert reward == 0.0 and "MemoryError" in info["error"]


def test_writing_outside_its_dir(tmp_path):
    targets = [tmp_path / "escape.txt", f"/tmp/m2rl-escape-{uuid.uuid4().hex}", "../escape.txt",
               "/usr/escape.txt", os.path.expanduser("~/escape.txt")]
    snippet = (f"ok = 0\nfor t in {[str(t) for t in targets]!r}:\n    try:\n"
               "        open(t, 'w').write('x')\n        ok += 1\n    except OSError:\n        pass\n"
               "print('pwned' if ok else 'contained')")
    reward, _ = _score(snippet)
    assert reward == 0.0
    for t in targets[:2] + targets[3:]:
        assert not os.path.exists(t)
    # it may write its own temp dir, which is gone afterwards
    assert _score("open('mine.txt', 'w').write('x')\nprint(open('mine.txt').read() and 'pwned')")[0] == 1.0


def test_reading_host_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("pwned\n")
    secret.chmod(0o644)
    snippet = (f"for p in [{str(secret)!r}, '/etc/passwd', '/proc/1/environ', {os.path.abspath(__file__)!r}]:\n"
               "    try:\n        open(p).read()\n        print('pwned')\n        break\n"
               "    except OSError:\n        pass")
    assert _score(snippet)[0] == 0.0
    # swapping its output files for links to host files leaks nothing back either
    swap = (f"import os\nfor n in ('stdout.txt', 'stderr.txt'):\n    os.remove(n)\n"
            f"    os.symlink({str(secret)!r}, n)\nraise SystemExit(1)")
    reward, info = _score(swap)
    assert reward == 0.0 and "pwned" not in json.dumps(info)


def test_opening_a_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    snippet = ("import socket\ntry:\n"
               f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
               "    s.sendall(b'hi')\n    print('pwned')\nexcept OSError as e:\n    print(e)")
    try:
        assert _score(snippet)[0] == 0.0
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_huge_output():
    reward, _ = _score("import sys\nwhile True:\n    sys.stdout.write('pwned\\n' * 10000)")
    assert reward == 0.0
    res = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", "", Limits(wall_s=5, output_bytes=1 << 16))
    assert res.output_capped and len(res.stdout) <= 1 << 16 and res.wall_s < 5


def test_killing_its_parent():
    sentinel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        snippet = ("import os, signal\nhit = 0\n"
                   f"for pid in (os.getppid(), {os.getpid()}, {sentinel.pid}, 1):\n"
                   "    try:\n        os.kill(pid, signal.SIGKILL)\n        hit += 1\n"
                   "    except OSError:\n        pass\n"
                   "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                   "print('pwned' if hit else 'contained')")
        from m2rl.rewards import Scorer

        with Scorer(workers=1) as scorer:  # through the worker pool: the worker survives
            sample = {"id": "k", "domain": "code", "reward_spec": SPEC}
            bad = scorer.score([sample], [f"```python\n{snippet}\n```"])[0]
            good = scorer.score([sample], ["```python\nprint('pwned')\n```"])[0]
        assert bad.reward == 0.0 and good.reward == 1.0
        assert sentinel.poll() is None  # still alive
    finally:
        sentinel.send_signal(signal.SIGKILL)
        sentinel.wait()
