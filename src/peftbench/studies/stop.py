"""Stop means stop: SIGTERM or Ctrl-C (SIGINT) on `peftbench study` lets the running runs checkpoint, then ends the
study with every process it started, and says in one line how to resume (the same command again).

Without a launcher the runs train in the study's own process: `signals.watch()` turns a signal into a stop request,
the run in its loop checkpoints at the next step, and no new run starts (runner.py).

With a launcher or parallel=N, `Supervisor` runs each child (the Hydra launcher process, or each parallel job) in a
session of its own, so a terminal's Ctrl-C reaches the study only, and the study decides for all of them (on SIGHUP
too: a closed terminal no longer reaches the children):
  1. On the first signal it writes OUT/plan.stop (a job that starts after it trains nothing: launch.py) and sends
     SIGTERM, once, to each process of this host that holds one of the launch's run locks (run.lock): the training
     processes, wherever they run here (a parallel job, a loky worker, a local Ray worker). Each saves its checkpoint
     at its next step and ends its job; a lock taken later is signalled when it appears. The launcher hands its
     remaining jobs out, each ends at once, and it exits.
  2. GRACE_S after the first signal, or at a second signal, it sends SIGKILL to every process of the children's
     sessions and every lock holder; the runs keep their last checkpoint.
  3. When the launcher has ended, what is left of its session (a loky worker, a Ray helper) is an orphan: killed.
Runs on other hosts get no signal from here: a job that starts later sees plan.stop (on a shared folder); one that is
training ends with its launcher (Ray) or runs on (SLURM: `scancel` it).
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from ..engine import signals
from ..engine.rundir import LOCK, read_lock
from ..errors import Stopped

GRACE_S = 120.0  # a training step and a checkpoint save of any run this package trains fit well within it
POLL_S = 0.2


def stopped(study: str, command: str, e: KeyboardInterrupt) -> Stopped:
    """The study's last line: which signal stopped it, and the command that resumes it."""
    signum = signals.requested() or signal.SIGINT
    how = ("stopped at once by a second signal: runs go on from their last checkpoint" if isinstance(e, signals.AtOnce)
           else f"stopped by {signals.name(signum)}: runs that were training saved a checkpoint")
    return Stopped(f"study {study} {how}; to resume, run the same command again: {command}", 128 + signum)


def say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a terminal that hung up: stopping matters more than saying so
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """The study's children and the runs they train, stopped together (see the module doc)."""

    def __init__(self, stop_file: Path, folders: list[Path]) -> None:
        self.stop_file, self.folders = stop_file, folders
        self.started = time.time()
        self.children: list[subprocess.Popen] = []
        self.signalled: set[int] = set()
        self.deadline: float | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Supervisor":
        self.stop_file.unlink(missing_ok=True)
        self._old = signals.install(self._on_signal)
        if self._old and hasattr(signal, "SIGHUP"):
            self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        signals.restore(self._old)
        left, end = self._sessions(), time.monotonic() + 5
        try:
            while left and time.monotonic() < end:  # a launcher's helpers (loky's) get a moment to end on their own
                time.sleep(POLL_S)
                left = self._sessions()
        finally:
            for pid in left:
                _kill(pid, signal.SIGKILL)

    @property
    def stopping(self) -> bool:
        return self.deadline is not None

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen | None:
        """Start a child in a session of its own; None once the study is stopping."""
        if self.stopping:
            return None
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.children.append(proc)
        return proc

    def wait(self, done: Callable[[], bool]) -> None:
        """Wait in the main thread (where the signal handler runs) until `done()`, stopping the runs when asked."""
        while not done():
            self.tick()
            time.sleep(POLL_S)

    def _on_signal(self, signum, frame) -> None:
        if self.stopping:  # asked twice: no more waiting
            self.kill()
            raise signals.at_once(signum)
        signals.StopFlag.pending = signum
        self.deadline = time.monotonic() + GRACE_S
        try:
            self.stop_file.write_text(f"{signals.name(signum)}\n")  # before any signal: a job that starts sees it
        except OSError:
            pass  # the folder went away: the runs are still signalled
        say(f"\npeftbench: {signals.name(signum)}: the running runs save a checkpoint and stop (at most "
            f"{GRACE_S:.0f} s); Ctrl-C again stops at once")
        self.tick()

    def tick(self) -> None:
        if not self.stopping:
            return
        for pid in self._holders():
            if pid not in self.signalled:  # once: a second SIGTERM would end the run before its checkpoint
                self.signalled.add(pid)
                _kill(pid, signal.SIGTERM)
        if time.monotonic() > self.deadline:
            say(f"peftbench: the runs did not stop within {GRACE_S:.0f} s: ending them; they keep their last "
                "checkpoint")
            self.kill()

    def kill(self) -> None:
        for pid in {*self._sessions(), *self._holders()}:
            _kill(pid, signal.SIGKILL)

    def _sessions(self) -> list[int]:
        """The live processes of the children's sessions (each child leads its own)."""
        for p in self.children:
            p.poll()  # reap a child that ended, so it is no zombie of ours
        sids = {p.pid for p in self.children}
        found = []
        for proc in psutil.process_iter(["status"]):
            try:
                if os.getsid(proc.pid) in sids and proc.pid != os.getpid() and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except OSError:
                pass
        return found

    def _holders(self) -> list[int]:
        """The processes of this host that hold a lock of this launch's runs, taken since it began: the training
        processes. A lock older than the launch, or a pid younger than its lock, is someone else's."""
        pids = []
        for folder in self.folders:
            try:
                taken = (folder / LOCK).stat().st_mtime
            except OSError:
                continue
            lock = read_lock(folder) or {}
            pid = lock.get("pid")
            if taken < self.started - 1 or lock.get("host") != platform.node() or not isinstance(pid, int) \
                    or pid == os.getpid():
                continue
            try:
                if psutil.Process(pid).create_time() <= taken + 1:
                    pids.append(pid)
            except psutil.Error:
                pass
        return pids
