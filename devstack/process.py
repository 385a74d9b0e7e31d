"""Process and port plumbing shared by the devstack launchers (Kafka nodes, Redis).

Every server a launcher starts runs in its own session (process group) on 127.0.0.1,
is registered in a set of live servers, and is stopped at interpreter exit, so a
crashed test run leaves no JVM behind. Every failure a developer can fix raises
:class:`DevstackError` with a one-line message that says what to do.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Protocol

log = logging.getLogger("devstack")

LOOPBACK = "127.0.0.1"

JAVA_MISSING = (
    "java not found on PATH: install OpenJDK 17 (apt-get install -y openjdk-17-jre-headless) "
    "or set KAFKA_BOOTSTRAP_SERVERS"
)


class Stoppable(Protocol):
    def stop(self) -> None: ...


class DevstackError(Exception):
    """A launcher failure; ``str(err)`` is one line that says what to do."""


# --------------------------------------------------------------------------- helpers


def one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def telling_lines(text: str, lines: int = 5) -> list[str]:
    """The last ``lines`` lines of ``text`` that say something: no blanks, no stack frames."""
    kept = []
    for line in text.splitlines():
        bare = line.strip()
        if not bare or bare.startswith(("at ", "... ")) or bare.endswith(" more"):
            continue
        kept.append(line.rstrip())
    return kept[-lines:]


def _tail(path: Path, lines: int = 5) -> list[str]:
    """The last telling lines of ``path`` (empty if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return telling_lines(data, lines)


def tail_summary(*paths: Path, lines: int = 5) -> str:
    found: list[str] = []
    for path in paths:
        found.extend(_tail(path, lines))
    if not found:
        return "(no log output)"
    return " | ".join(one_line(line, 200) for line in found[-lines:])


def env_port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise DevstackError(f"{name}={raw!r} is not a port number: set it to 1-65535 or unset it")
    return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def require_port_free(port: int, env_name: str, advice: str | None = None) -> None:
    """Raise unless ``port`` can be listened on (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            advice = advice or f"free it or leave {env_name} unset"
            raise DevstackError(f"port {port} on {LOOPBACK} is taken: {advice}") from None


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_hostport(server: str, default_port: int) -> tuple[str, int]:
    server = server.strip()
    if "://" in server:  # PLAINTEXT://host:port
        server = server.split("://", 1)[1]
    if server.startswith("["):  # [::1]:9092
        host, _, rest = server[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, default_port
    return host, int(port)


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` when that exists, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise DevstackError(JAVA_MISSING)
    return found


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group ``proc`` leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the group, wait ``timeout`` s, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGCONT)  # in case it was paused
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, timeout)
            signal_group(proc, signal.SIGKILL)
            proc.wait()
    else:
        # The leader is gone; take any stragglers in its group with it.
        signal_group(proc, signal.SIGKILL)
    return proc.returncode


def orphan_guard() -> list[str]:
    """A command prefix that SIGTERMs the child if this process dies without stopping it.

    ``setpriv --pdeathsig`` (util-linux) sets PR_SET_PDEATHSIG and execs the real command.
    The signal fires when the *thread* that forked exits, so it is only used from the main
    thread; elsewhere, and where setpriv is missing, the atexit hook below is the guard.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


# Anything still running when the interpreter exits is stopped, so a crashed test run
# does not leave a JVM behind.
LIVE: set[Stoppable] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(LIVE):
        with contextlib.suppress(Exception):
            server.stop()


def env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in {"0", "false", "no", "off"}
