"""CEL conditions evaluated in worker processes, each answer within a deadline.

Why processes: the CEL library has no cost or time limit and holds the GIL while it runs, so
an expensive `when` evaluated in the server (on its event loop or in any thread) stops every
request of every tenant. A worker can be killed when it is late; a thread cannot.

What bounds one tenant (the `owner` of a condition: the namespace whose object holds it):
- each evaluation gets `timeout` seconds; a late worker is killed and replaced, and the
  expression is quarantined (refused without running) for `quarantine` seconds, so repeating
  the request does not keep a worker busy or the machine re-spawning; the owner's other
  conditions wait `penalty` seconds too, so many slow expressions cannot kill workers faster
  than they are replaced;
- an owner has at most one evaluation running at a time and waits at most `timeout` for its
  turn, so one tenant occupies at most one worker and others keep the rest;
- each worker's address space is capped (`memory`), so an expression building huge lists
  ends its worker, not the server.
What cannot be answered in time raises EvaluationUnavailable ("timeout", "busy",
"quarantined", "failed"); callers refuse that one request with temporarily_unavailable.

CEL is deterministic (no clock, no I/O), so answers are kept by (expression, variables): a
client repeating its request costs a dictionary lookup, not a round trip to a worker.

Waiting for a worker must not hold the server's event loop, so the server evaluates in a
thread, except for expressions this sandbox has seen answer quickly every time (`cheap`):
those it evaluates `inline()`, on the loop, within `inline_timeout`. An inline evaluation
that is slow marks its expression slow for good (threads from then on), so each expression
can hold the loop at most once, for at most `inline_timeout`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from typing import IO, Any

from kubemint.crypto import compact_json
from kubemint.policy.expressions import Condition, EvaluationUnavailable, variables

log = logging.getLogger("kubemint.conditions")
START_TIMEOUT = 60.0  # seconds for a new worker to import CEL and say "ready" (slow when starved)
ANSWERS = 4096  # answers kept, by (expression, variables)
CHEAP = 0.002  # CPU seconds of evaluation (measured in the worker) below which it is cheap
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("inline", default=False)


class _Worker:
    def __init__(self, memory: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubemint.policy.worker", str(memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=False,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self._fd = self.process.stdout.fileno()
        self._buffer = b""

    def wait_ready(self) -> _Worker:
        if self.read_line(time.monotonic() + START_TIMEOUT) != b"ready":
            self.kill()
            raise RuntimeError("a CEL worker did not start")
        return self

    def ask(self, message: bytes, deadline: float) -> bytes | None:
        """Send one request; its answer line, or None when late or dead."""
        try:
            self._stdin.write(message)
            self._stdin.flush()
        except (OSError, ValueError):  # a dead worker, or one already killed
            return None
        return self.read_line(deadline)

    def read_line(self, deadline: float) -> bytes | None:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                return None  # the worker died
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def cpu(self) -> float | None:
        """CPU seconds this worker has used (None where /proc cannot tell)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, IndexError, ValueError):
            return None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class _Inline:
    """`Sandbox.inline()`'s block (a class: a generator-based context manager costs a few
    microseconds per token request)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _INLINE.set(True)

    def __exit__(self, *exc: object) -> None:
        _INLINE.reset(self._token)


class Sandbox:
    """An `Evaluator` (see kubemint.policy.expressions) backed by worker processes."""

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 0.1,
        quarantine: float = 30.0,
        penalty: float = 5.0,
        memory: int = 512 * 1024 * 1024,
        inline_timeout: float = 0.02,
    ) -> None:
        self.size, self.timeout, self.memory = workers, timeout, memory
        self.quarantine, self.penalty = quarantine, penalty
        self.inline_timeout = min(inline_timeout, timeout)
        self.unavailable: Counter[str] = Counter()  # reason → evaluations refused, for metrics
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._turns: dict[str, threading.Semaphore] = {}
        self._late: dict[str, float] = {}  # source or owner → when its quarantine ends
        self._lock = threading.Lock()
        self._answers: OrderedDict[bytes, bool] = OrderedDict()
        self._fast: set[str] = set()  # expressions that answered cheaply, and only so
        self._slow: set[str] = set()  # expressions that did not, once
        self._stopped = False

    def start(self) -> None:
        """Start the workers (blocking until they are ready; they start in parallel)."""
        starting = [_Worker(self.memory) for _ in range(self.size)]
        for worker in starting:
            self._add(worker.wait_ready())

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            workers = list(self._all)
        for worker in workers:
            worker.kill()
        while not self._idle.empty():
            self._idle.get_nowait()

    def cheap(self, sources: Iterable[str]) -> bool:
        """Whether every one of these expressions has answered, always cheaply."""
        return all(s in self._fast and s not in self._slow for s in sources)

    def inline(self) -> contextlib.AbstractContextManager[None]:
        """Evaluations in this block run on the caller's event loop: `inline_timeout`."""
        return _Inline()

    def evaluate(
        self,
        condition: Condition,
        request: Mapping[str, Any],
        claims: Mapping[str, Any],
        owner: str,
        tenant_claims: Mapping[str, Any] | None = None,
    ) -> bool:
        source = condition.source
        timeout = self.inline_timeout if _INLINE.get() else self.timeout
        inputs = variables(request, claims, tenant_claims)
        # One request to a worker, also the answer cache's key: keys sorted, so equal inputs
        # are one key.
        message = compact_json.dumps({"source": source, **inputs}, sort_keys=True, default=str)
        message += b"\n"
        with self._lock:
            known = self._answers.get(message)
            if known is not None:
                self._answers.move_to_end(message)
                return known
        if self._quarantined(source, owner):
            raise self._refuse("quarantined")
        turn = self._turn(owner)
        if not turn.acquire(timeout=timeout):
            raise self._refuse("busy")
        try:
            if self._quarantined(source, owner):  # decided while this one waited its turn
                raise self._refuse("quarantined")
            try:
                worker = self._idle.get(timeout=timeout)
            except queue.Empty:
                raise self._refuse("busy") from None
            spent = worker.cpu()
            answer = worker.ask(message, time.monotonic() + timeout)
            if answer is None:
                now_cpu = worker.cpu()
                used = None if now_cpu is None or spent is None else now_cpu - spent
                raise self._late_answer(worker, used, timeout, source, owner)
            self._idle.put(worker)
        finally:
            turn.release()
        reply = json.loads(answer)
        allows = reply.get("allows") is True
        with self._lock:
            (self._fast if reply.get("seconds", 1.0) < CHEAP else self._slow).add(source)
            if len(self._fast) + len(self._slow) > ANSWERS:  # expressions come and go
                self._fast.clear()
            self._answers[message] = allows
            if len(self._answers) > ANSWERS:
                self._answers.popitem(last=False)
        return allows

    def _late_answer(
        self, worker: _Worker, cpu: float | None, timeout: float, source: str, owner: str
    ) -> EvaluationUnavailable:
        """What a missed deadline costs. The worker is replaced (it may compute for hours)
        and its owner paused for `penalty`, so nobody can make workers restart faster than
        that. The expression is quarantined only when it was at fault: its worker died, or
        spent most of the deadline on the CPU; a worker that barely ran was late because the
        machine is busy. On the event loop (inline) any miss sends the expression to threads
        for good; a quarantine applies only there, where the full deadline was given."""
        died = worker.process.poll() is not None
        at_fault = died or cpu is None or cpu >= timeout / 2
        inline = _INLINE.get()
        self._replace(worker)
        now = time.monotonic()
        with self._lock:
            if len(self._late) > 4096:  # forget quarantines that are over
                self._late = {k: t for k, t in self._late.items() if t > now}
            self._late[f"owner:{owner}"] = now + self.penalty
            if at_fault or inline:
                self._slow.add(source)
            if at_fault and not inline:
                self._late[source] = now + self.quarantine
        if not at_fault:
            return self._refuse("busy")
        log.warning(
            "a condition of %s %s; refusing it for %ds",
            owner or "?",
            "ended its worker" if died else f"took longer than {timeout}s",
            0 if inline else int(self.quarantine),
        )
        return self._refuse("failed" if died else "timeout")

    def _quarantined(self, source: str, owner: str) -> bool:
        now = time.monotonic()
        return self._late.get(source, 0.0) > now or self._late.get(f"owner:{owner}", 0.0) > now

    def _turn(self, owner: str) -> threading.Semaphore:
        with self._lock:
            return self._turns.setdefault(owner, threading.Semaphore(1))

    def _refuse(self, reason: str) -> EvaluationUnavailable:
        self.unavailable[reason] += 1
        return EvaluationUnavailable(reason)

    def _add(self, worker: _Worker) -> None:
        with self._lock:
            if self._stopped:
                worker.kill()
                return
            self._all.add(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill a late or dead worker and start another in the background."""
        worker.kill()  # answers nothing any more: late answers can never be misread
        with self._lock:
            self._all.discard(worker)
        threading.Thread(target=self._respawn, name="cel-worker-start", daemon=True).start()

    def _respawn(self) -> None:
        delay = 1.0
        while not self._stopped:
            try:
                self._add(_Worker(self.memory).wait_ready())
                return
            except (OSError, RuntimeError):
                log.exception("a CEL worker could not be started; retrying in %.0fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
