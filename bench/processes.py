"""Child processes the harness starts, and the guarantee that none outlives it.

Every child runs in its own session (``start_new_session=True``) so its whole
process group can be signalled; on Linux it is also started under ``setpriv
--pdeathsig TERM`` (when the harness's main thread starts it), so the kernel
terminates it if the harness dies without cleaning up. Besides that,
:class:`Children` stops everything it started on exit from its ``with`` block
(normal end, error, Ctrl-C), and an ``atexit`` hook stops anything left.

CPU accounting reads ``/proc/<pid>/stat`` (user + system time), which is how
the harness reports who used the two cores during a step.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "REPO_ROOT",
    "Child",
    "Children",
    "cpu_seconds",
    "listening_pid",
    "rss_kb",
    "self_cpu_seconds",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LIVE: set[Child] = set()


def _orphan_guard() -> list[str]:
    """``setpriv --pdeathsig TERM --`` when usable (main thread only: the signal
    fires when the *thread* that forked exits)."""
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def listening_pid(host_port: str) -> int | None:
    """The pid of the local process listening on ``host_port`` (``127.0.0.1:19092``), read
    from ``/proc/net/tcp*`` and the processes' socket descriptors; None when it is not on this
    host or not visible. Used to attribute CPU to a broker the harness did not start."""
    host, _, port_text = host_port.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port_text.isdigit():
        return None
    port = int(port_text)
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(inode)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return int(entry.name)
    return None


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Child:
    """One child process, its log file, and how to stop it."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.started_at: float | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*_orphan_guard(), *self.cmd],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [ln for ln in text.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:]) or "(empty log)"

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def send_stop(self) -> None:
        """SIGTERM the process group (the children stop cleanly on it)."""
        if self.alive:
            self._signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s after :meth:`send_stop`, then SIGKILL the group."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        else:
            self._signal(signal.SIGKILL)  # stragglers in the group, if any
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)
        return self.proc.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        self.send_stop()
        return self.wait_stopped(timeout)


class Children:
    """A set of children stopped together (in parallel) when the block ends."""

    def __init__(self, stop_timeout: float = 15.0) -> None:
        self.stop_timeout = stop_timeout
        self.items: list[Child] = []

    def start(self, child: Child) -> Child:
        self.items.append(child.start())
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.items if not c.alive]

    def stop_all(self) -> dict[str, int | None]:
        for child in self.items:
            child.send_stop()
        deadline = time.monotonic() + self.stop_timeout
        codes = {c.name: c.wait_stopped(deadline - time.monotonic()) for c in self.items}
        self.items = []
        return codes

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


@atexit.register
def _stop_leftovers() -> None:
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.stop(timeout=5)
