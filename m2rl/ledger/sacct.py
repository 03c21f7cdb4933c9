"""Slurm accounting: query `sacct -D` and parse its `-P` output.

`-D` (--duplicates) lists every run of a requeued job (22.05 has no Restarts field: the
rows of one JobIDRaw, in order, are its restarts); `-X` keeps allocations only (no
steps); `-P` separates fields with '|', and JobName goes last so that a '|' inside a job
name cannot shift the other columns. `SLURM_TIME_FORMAT=%s` makes times epoch seconds,
so no time zone is guessed; ISO times (`2026-11-22T16:22:07`, local time) are parsed too,
for text captured without it.

GPU-seconds of a row = ElapsedRaw x `gres/gpu` of AllocTRES.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "ElapsedRaw", "Submit", "Eligible", "Start", "End",
          "AllocTRES", "Partition", "NNodes", "NCPUS", "JobName")
CHUNK = 200  # job ids per sacct call (command line length)
_TASK = re.compile(r"^(\d+)_(\d+)$")


class SacctUnavailable(RuntimeError):
    """sacct is not installed, or cannot reach slurmdbd."""


class SacctParseError(ValueError):
    pass


@dataclass(frozen=True)
class SacctRow:
    job_id: str          # "123", "123_4" (array task), "123_[5-7]" (pending tasks)
    job_id_raw: str
    state: str           # first word, upper case: "CANCELLED by 0" -> "CANCELLED"
    state_raw: str
    exit_code: str
    elapsed_s: int
    submit: float | None
    eligible: float | None
    start: float | None
    end: float | None
    alloc_tres: str
    partition: str
    nodes: int
    cpus: int
    name: str

    @property
    def gpus(self) -> int:
        return tres_count(self.alloc_tres, "gres/gpu")

    @property
    def gpu_seconds(self) -> float:
        return float(self.elapsed_s * self.gpus)

    @property
    def array_job_id(self) -> str | None:
        return self.job_id.split("_", 1)[0] if "_" in self.job_id else None

    @property
    def array_task_id(self) -> int | None:
        m = _TASK.match(self.job_id)
        return int(m.group(2)) if m else None

    @property
    def queued_s(self) -> float | None:
        """Submit (or requeue) to start: time spent waiting in the queue."""
        if self.submit is None or self.start is None:
            return None
        return max(0.0, self.start - self.submit)

    def key(self) -> tuple:
        return (self.job_id_raw, self.submit, self.start, self.end, self.state_raw)


def tres_count(tres: str, name: str) -> int:
    """`billing=2,cpu=2,gres/gpu=2,mem=2G,node=1` -> 2 for gres/gpu. Typed GPUs
    (`gres/gpu:a100=2`) are counted only when the untyped total is absent."""
    total, typed = None, 0
    for part in tres.split(","):
        k, _, v = part.partition("=")
        k = k.strip()
        if k == name:
            total = _int(v)
        elif k.startswith(name + ":"):
            typed += _int(v)
    return total if total is not None else typed


def _int(v: str) -> int:
    try:
        return int(v.strip())
    except ValueError:
        return 0


def parse_time(v: str) -> float | None:
    v = v.strip()
    if v in ("", "Unknown", "None", "N/A", "0"):
        return None
    if v.isdigit():
        return float(v)
    try:
        return datetime.strptime(v, "%Y-%m-%dT%H:%M:%S").timestamp()  # local time, like sacct prints
    except ValueError:
        raise SacctParseError(f"unrecognised time {v!r}") from None


def parse(text: str) -> list[SacctRow]:
    """Rows of `sacct -P` output with a header line (any field order, JobName last)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split("|")
    missing = [f for f in ("JobID", "JobIDRaw", "State", "ElapsedRaw", "AllocTRES") if f not in header]
    if missing:
        raise SacctParseError(f"sacct output lacks the field(s) {', '.join(missing)} (header: {lines[0]!r})")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split("|")
        if len(parts) < len(header):
            raise SacctParseError(f"line {n} has {len(parts)} fields, the header {len(header)}: {line!r}")
        if len(parts) > len(header):  # a '|' in the last field (JobName)
            parts = parts[:len(header) - 1] + ["|".join(parts[len(header) - 1:])]
        f = dict(zip(header, parts))
        if "." in f["JobID"]:  # a step (batch, extern, 0): text captured without -X
            continue
        state_raw = f["State"].strip()
        try:
            rows.append(SacctRow(
                job_id=f["JobID"].strip(), job_id_raw=f["JobIDRaw"].strip(),
                state=(state_raw.split() or ["UNKNOWN"])[0].rstrip("+").upper(), state_raw=state_raw,
                exit_code=f.get("ExitCode", "").strip(), elapsed_s=_int(f["ElapsedRaw"]),
                submit=parse_time(f.get("Submit", "")), eligible=parse_time(f.get("Eligible", "")),
                start=parse_time(f.get("Start", "")), end=parse_time(f.get("End", "")),
                alloc_tres=f["AllocTRES"].strip(), partition=f.get("Partition", "").strip(),
                nodes=_int(f.get("NNodes", "0")), cpus=_int(f.get("NCPUS", "0")), name=f.get("JobName", "")))
        except SacctParseError as err:
            raise SacctParseError(f"line {n}: {err}") from None
    return rows


def dedupe(rows: Iterable[SacctRow]) -> list[SacctRow]:
    seen, out = set(), []
    for r in rows:
        if r.key() not in seen:
            seen.add(r.key())
            out.append(r)
    return out


def command(job_ids: Sequence[str], since: float) -> list[str]:
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))
    return ["sacct", "-D", "-X", "-P", "-S", start, "-E", "now", "--format=" + ",".join(FIELDS),
            "-j", ",".join(job_ids)]


def query(job_ids: Sequence[str], since: float, timeout_s: float = 120.0) -> tuple[list[SacctRow], str]:
    """Every `-D` row of these jobs (array ids give all their tasks) since `since`.

    Returns the rows and the raw text (header once), which the report keeps as a snapshot
    that `--sacct-file` can read back. Raises SacctUnavailable with the reason."""
    ids = sorted(set(job_ids), key=lambda s: (len(s), s))
    if not ids:
        return [], ""
    if shutil.which("sacct") is None:
        raise SacctUnavailable("sacct is not on PATH")
    env = {**os.environ, "SLURM_TIME_FORMAT": "%s"}
    header, body = "", []
    for i in range(0, len(ids), CHUNK):
        cmd = command(ids[i:i + CHUNK], since)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise SacctUnavailable(f"sacct gave no answer in {timeout_s:.0f} s") from None
        except OSError as err:
            raise SacctUnavailable(f"sacct could not run: {err}") from None
        err_text = " ".join(out.stderr.split())
        if out.returncode != 0 or "Problem talking to the database" in out.stderr:
            raise SacctUnavailable(f"`{' '.join(cmd[:8])} ...` exited {out.returncode}: {err_text or '(no message)'}")
        lines = out.stdout.splitlines()
        if lines:
            header = header or lines[0]
            body += lines[1:]
    text = "\n".join([header] + body) + "\n" if header else ""
    return dedupe(parse(text)), text
