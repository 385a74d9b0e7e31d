"""Debian's ``redis-server`` on a loopback port, without persistence, for tests and the demo."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack.process import (
    LIVE,
    LOOPBACK,
    DevstackError,
    free_ports,
    orphan_guard,
    require_port_free,
    tail_summary,
    terminate,
)

DEFAULT_REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 5.0
REDIS_MISSING = (
    "redis-server not found: run `apt-get install -y redis-server` (or `make setup`), "
    "or set REDIS_URL"
)


def _redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Debian's ``redis-server`` on a loopback port: no persistence, no daemonizing.

    >>> with RedisServer() as redis:
    ...     print(redis.url)
    """

    def __init__(
        self, port: int | None = None, *, start_timeout: float = DEFAULT_REDIS_START_TIMEOUT
    ) -> None:
        self.port = port
        self.start_timeout = start_timeout
        self.version: str | None = None
        self.workdir: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, the value for ``REDIS_URL``."""
        if self.port is None:
            raise DevstackError("redis has no port yet: call start() first")
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        return f"<RedisServer {LOOPBACK}:{self.port} {'running' if self.running else 'stopped'}>"

    def start(self) -> Self:
        if self.running:
            return self
        begin = time.monotonic()
        exe = shutil.which("redis-server")
        if not exe:
            raise DevstackError(REDIS_MISSING)
        if self.port is None:
            self.port = free_ports(1)[0]
        else:
            require_port_free(self.port, "REVOCAST_REDIS_PORT")
        self.version = _redis_version(exe)
        self.workdir = Path(tempfile.mkdtemp(prefix="revocast-redis-"))
        logfile = self.workdir / "redis.log"
        cmd = [
            *orphan_guard(),
            exe,
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with logfile.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        LIVE.add(self)
        deadline = begin + self.start_timeout
        while not _redis_ping(LOOPBACK, self.port):
            code = self._proc.poll()
            if code is not None or time.monotonic() >= deadline:
                tail = tail_summary(logfile)
                self.stop()
                what = (
                    f"exited early with code {code}"
                    if code is not None
                    else f"did not answer PING within {self.start_timeout:g} s"
                )
                raise DevstackError(f"redis-server {what}: {tail}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - begin
        return self

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, REDIS_STOP_TIMEOUT)
            self._proc = None
        LIVE.discard(self)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _redis_version(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return None


def probe_external_redis(url: str, timeout: float) -> None:
    import redis

    failure = DevstackError(
        f"REDIS_URL={url} did not answer within {timeout:g} s: start that server or unset "
        "the variable to use the local launcher"
    )
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
    except ValueError as exc:
        raise DevstackError(
            f"REDIS_URL={url} is not a redis URL ({exc}): fix or unset it"
        ) from None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.AuthenticationError as exc:
                raise DevstackError(
                    f"REDIS_URL={url} refused the credentials ({exc}): fix the URL or unset it"
                ) from None
            except redis.RedisError:
                pass
            if time.monotonic() >= deadline:
                raise failure
            time.sleep(0.2)
    finally:
        client.close()
