"""The control channel between learner 0 (the driver) and the rollout workers.

One TCP connection per rollout worker (`multiprocessing.connection`, HMAC-authenticated
with a key derived from the job), carrying pickled messages. Every message the driver
sends gets exactly one reply, in order, so the driver may queue several requests on a
worker (generate batch k+1, then load weights k+1) and read the replies as it needs
them: that is all bounded staleness asks of the transport. A worker whose driver dies
sees the connection close and stops; the driver sees a dead worker the same way.

Token ids and log-probs travel as numpy arrays; weights travel here only on CPU (as
safetensors bytes): on GPU they go by NCCL broadcast (`weight_sync`).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, Callable

from m2rl.runtime.dist import node_name

log = logging.getLogger("m2rl.rollout")


class WorkerFailed(RuntimeError):
    pass


def _authkey(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


POLL_S = 0.2


class StopWaiting(Exception):
    """The driver gave up waiting for a reply: the job must stop (a preemption notice)."""


class DriverChannel:
    """Learner 0's end: accepts `n` workers, then talks to each by index."""

    def __init__(self, host: str, port: int, n: int, key: str, timeout_s: float = 900.0):
        bind = "127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0"
        self.listener = Listener((bind, port), authkey=_authkey(key), backlog=max(8, n))
        self.conns: list[Connection | None] = [None] * n
        self.hosts: list[str] = ["?"] * n  # the node each worker runs on, as its hello says
        self.pending: list[deque] = [deque() for _ in range(n)]  # what each queued request awaits
        self.stash: list[dict[Any, dict]] = [{} for _ in range(n)]
        self.timeout_s = timeout_s
        self._accept(n)

    def _accept(self, n: int) -> None:
        import socket

        deadline = time.time() + self.timeout_s
        # bound the wait (a worker that never starts is an error); Listener has no public timeout
        sock = getattr(getattr(self.listener, "_listener", None), "_socket", None)
        while any(c is None for c in self.conns):
            if sock is not None:
                sock.settimeout(max(1.0, deadline - time.time()))
            try:
                conn = self.listener.accept()
            except socket.timeout:
                missing = [i for i, c in enumerate(self.conns) if c is None]
                raise WorkerFailed(f"rollout workers {missing} did not connect within {self.timeout_s:.0f} s")
            if sock is not None:
                sock.settimeout(None)
            hello = conn.recv()
            self.conns[hello["worker"]] = conn
            self.hosts[hello["worker"]] = hello.get("host", "?")
            log.info("rollout worker %d connected (%s)", hello["worker"], hello.get("host", "?"))

    @property
    def n(self) -> int:
        return len(self.conns)

    def send(self, i: int, msg: dict, tag: Any) -> None:
        """Queue `msg` on worker i; its reply will be filed under `tag`."""
        try:
            self.conns[i].send(msg)
        except (OSError, EOFError) as err:
            raise WorkerFailed(self._gone(i, err)) from None
        self.pending[i].append(tag)

    def _gone(self, i: int, err: BaseException) -> str:
        why = str(err) or "connection closed: its process died or was killed"
        return f"rollout worker {i} on {self.hosts[i]} is gone ({why})"

    def reply(self, i: int, tag: Any, should_stop: Callable[[], bool] | None = None) -> dict:
        """The reply to the request filed under `tag` (earlier replies are kept for later).
        While waiting, `should_stop()` is asked every POLL_S; True gives up with StopWaiting."""
        while tag not in self.stash[i]:
            if not self.pending[i]:
                raise RuntimeError(f"no request {tag!r} is pending on rollout worker {i}")
            try:
                while should_stop is not None and not self.conns[i].poll(POLL_S):
                    if should_stop():
                        raise StopWaiting(f"stopped waiting for rollout worker {i}'s {tag!r}")
                got = self.conns[i].recv()
            except (OSError, EOFError) as err:
                raise WorkerFailed(self._gone(i, err)) from None
            if got.get("op") == "error":
                raise WorkerFailed(f"rollout worker {i} failed:\n{got['traceback']}")
            self.stash[i][self.pending[i].popleft()] = got
        return self.stash[i].pop(tag)

    def close(self, final: dict | None = None) -> None:
        for conn in self.conns:
            if conn is None:
                continue
            try:
                if final is not None:
                    conn.send(final)
                conn.close()
            except (OSError, EOFError):
                pass
        self.listener.close()


def serve(host: str, port: int, index: int, key: str, handle: Callable[[dict], dict | None],
          connect_timeout_s: float = 900.0) -> dict:
    """A worker's loop: connect to the driver, answer each message with `handle(msg)`
    until a message with op "stop"; returns that message."""
    import traceback

    deadline = time.time() + connect_timeout_s
    while True:
        try:
            conn = Client((host, port), authkey=_authkey(key))
            break
        except (ConnectionRefusedError, OSError):
            if time.time() > deadline:
                raise WorkerFailed(f"could not reach the driver at {host}:{port} in {connect_timeout_s:.0f} s")
            time.sleep(0.5)
    conn.send({"worker": index, "host": node_name()})
    with conn:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                raise WorkerFailed("the driver (learner 0) closed the connection") from None
            if msg.get("op") == "stop":
                return msg
            try:
                out = handle(msg)
            except Exception:
                conn.send({"op": "error", "traceback": traceback.format_exc()})
                raise
            try:
                conn.send(out)
            except OSError:
                # the driver stopped mid-request (a preemption notice) and said so before
                # closing: its "stop" is still readable; anything else is a lost driver
                while conn.poll(0):
                    if (msg := conn.recv()).get("op") == "stop":
                        return msg
                raise WorkerFailed("the driver (learner 0) closed the connection") from None
