"""Start the Kafka broker and Redis server that revocast's tests and benchmarks run against.

Three sources, tried in order by :func:`resolve_services`:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``, each on its own, when set;
2. testcontainers, when a Docker engine answers (``REVOCAST_TESTCONTAINERS=0`` skips it);
3. the local launcher: :class:`KafkaBroker` runs ``kafka.Kafka`` (KRaft, one combined
   broker+controller) from jars that Maven copies into ``~/.cache/revocast``, and
   :class:`RedisServer` runs Debian's ``redis-server``. Both listen on 127.0.0.1 only.

Every failure a developer can fix raises :class:`DevstackError` with a one-line message
that says what to do.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"

LOOPBACK = "127.0.0.1"
DEFAULT_KAFKA_START_TIMEOUT = 60.0
DEFAULT_REDIS_START_TIMEOUT = 10.0
DEFAULT_ENV_TIMEOUT = 10.0
KAFKA_STOP_TIMEOUT = 20.0
REDIS_STOP_TIMEOUT = 5.0
MAVEN_TIMEOUT = 1200.0
MARKER_NAME = ".revocast-complete.json"

# Sized for a 2-core, 24 GiB machine; Kafka's own defaults for the GC settings.
KAFKA_JVM_OPTS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
# The storage format step is a short-lived tool: start fast, stay small.
FORMAT_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
# AppCDS: the first broker to stop cleanly dumps the classes it loaded into an archive in
# the cache; later brokers (and the format step) map it and start ~1-2 s sooner. The JVM
# falls back to normal class loading if the archive does not fit; the cds log tags are
# silenced so that fallback never reaches the console log. REVOCAST_KAFKA_CDS=0 disables.
CDS_QUIET = "-Xlog:cds*=off"

DEFAULT_KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"  # the image testcontainers' module targets
DEFAULT_REDIS_IMAGE = "redis:7.2"

JAVA_MISSING = (
    "java not found on PATH: install OpenJDK 17 (apt-get install -y openjdk-17-jre-headless) "
    "or set KAFKA_BOOTSTRAP_SERVERS"
)
MVN_MISSING = (
    "mvn not found on PATH: install Maven (apt-get install -y maven) so the Kafka {version} "
    "jars can be fetched, or set KAFKA_BOOTSTRAP_SERVERS"
)
REDIS_MISSING = (
    "redis-server not found: run `apt-get install -y redis-server` (or `make setup`), "
    "or set REDIS_URL"
)


class DevstackError(Exception):
    """A launcher failure; ``str(err)`` is one line that says what to do."""


# --------------------------------------------------------------------------- helpers


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _telling_lines(text: str, lines: int = 5) -> list[str]:
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
    return _telling_lines(data, lines)


def _tail_summary(*paths: Path, lines: int = 5) -> str:
    found: list[str] = []
    for path in paths:
        found.extend(_tail(path, lines))
    if not found:
        return "(no log output)"
    return " | ".join(_one_line(line, 200) for line in found[-lines:])


def cache_root() -> Path:
    """``$REVOCAST_CACHE``, else ``~/.cache/revocast``."""
    return Path(os.environ.get("REVOCAST_CACHE") or "~/.cache/revocast").expanduser()


def kafka_version() -> str:
    """The Kafka version pinned by ``devstack/pom.xml`` (its ``kafka.version`` property)."""
    try:
        root = ET.parse(POM).getroot()  # noqa: S314 - our own file
    except (OSError, ET.ParseError) as exc:
        raise DevstackError(f"cannot read {POM}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise DevstackError(f"{POM} has no <kafka.version> property: restore it")
    return (node.text or "").strip()


def _env_port(name: str) -> int | None:
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


def _free_ports(count: int) -> list[int]:
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


def _require_port_free(port: int, env_name: str, advice: str | None = None) -> None:
    """Raise unless ``port`` can be listened on (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            advice = advice or f"free it or leave {env_name} unset"
            raise DevstackError(f"port {port} on {LOOPBACK} is taken: {advice}") from None


def _tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _split_hostport(server: str, default_port: int) -> tuple[str, int]:
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


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group ``proc`` leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the group, wait ``timeout`` s, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGCONT)  # in case it was paused
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, timeout)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    else:
        # The leader is gone; take any stragglers in its group with it.
        _signal_group(proc, signal.SIGKILL)
    return proc.returncode


def _orphan_guard() -> list[str]:
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
_LIVE: set[KafkaBroker | RedisServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------- jars


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cache_complete(libs: Path, version: str) -> bool:
    try:
        marker = json.loads((libs / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("pom_sha256") == _pom_digest()
        and (libs / f"kafka_2.13-{version}.jar").is_file()
        and (libs / f"kafka-clients-{version}.jar").is_file()
    )


def _maven_error(output: str) -> str:
    """The informative part of Maven's first ``[ERROR]`` line."""
    errors = [ln.split("[ERROR]", 1)[1].strip() for ln in output.splitlines() if "[ERROR]" in ln]
    errors = [ln for ln in errors if ln]
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    best = errors[0] if errors else (lines[-1] if lines else "no output")
    best = best.split(" -> [Help", 1)[0]
    # "Failed to execute goal ... on project X: Could not resolve ...: Could not transfer ..."
    # - the last "Could not" clause is the cause.
    cause = best.rfind("Could not ")
    return _one_line(best[cause:] if cause > 0 else best, 240)


def ensure_kafka_jars(offline_ok: bool = True) -> Path:
    """Return the directory holding the broker's runtime jars, fetching them if needed.

    The jars live in ``<cache_root()>/kafka-<version>/libs``. With ``offline_ok=True``
    (the default) a complete cache - one whose marker matches the current pom - is
    returned without touching the network or Maven. ``offline_ok=False`` re-runs Maven
    even then (a refresh). Maven copies into a staging directory that replaces ``libs``
    only once the copy succeeded, under a file lock, so concurrent callers are safe.
    """
    version = kafka_version()
    base = cache_root() / f"kafka-{version}"
    libs = base / "libs"
    if offline_ok and _cache_complete(libs, version):
        return libs

    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if offline_ok and _cache_complete(libs, version):  # another process fetched them
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise DevstackError(MVN_MISSING.format(version=version))
        staging = base / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        log.info("fetching Kafka %s jars: %s", version, " ".join(cmd))
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=MAVEN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise DevstackError(
                f"mvn did not finish fetching the Kafka {version} jars within "
                f"{MAVEN_TIMEOUT:.0f} s: check access to Maven Central or set "
                "KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DevstackError(
                f"mvn could not fetch the Kafka {version} jars (exit {done.returncode}: "
                f"{_maven_error(done.stdout + done.stderr)}): check access to Maven Central "
                "(proxy settings in ~/.m2/settings.xml) or set KAFKA_BOOTSTRAP_SERVERS"
            )
        marker = {
            "kafka_version": version,
            "pom_sha256": _pom_digest(),
            "jars": sorted(p.name for p in staging.glob("*.jar")),
            "fetched_at": time.time(),
        }
        (staging / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
        old = base / f"libs.old-{os.getpid()}"
        if libs.exists():
            libs.rename(old)
        staging.rename(libs)
        shutil.rmtree(old, ignore_errors=True)
        return libs


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in {"0", "false", "no", "off"}


def _cds_archive(java: str, libs: Path) -> Path | None:
    """Where the AppCDS archive for this JVM and this set of jars lives (may not exist yet).

    The name hashes the JVM binary (path, size, mtime) and the jar cache's marker, so a
    JDK upgrade or a re-fetch gets a new archive instead of a mismatched one.
    """
    try:
        real_java = Path(java).resolve()
        st = real_java.stat()
        marker = (libs / MARKER_NAME).read_bytes()
    except OSError:
        return None  # no marker: jars passed in by hand; skip the archive
    key = hashlib.sha256(
        f"{real_java}\0{st.st_size}\0{st.st_mtime_ns}\0".encode() + marker
    ).hexdigest()[:16]
    directory = libs.parent / "cds"
    try:
        directory.mkdir(exist_ok=True)
    except OSError:
        return None
    return directory / f"kafka-{key}.jsa"


def _libs_version(libs: Path) -> str:
    """The Kafka version on a classpath, read from the kafka-clients jar's name."""
    for jar in libs.glob("kafka-clients-*.jar"):
        return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
    raise DevstackError(f"{libs} has no kafka-clients jar: run `python -m devstack fetch`")


def _random_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints, without starting a JVM for it."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------- Kafka


class KafkaBroker:
    """One KRaft Kafka node (broker + controller) on 127.0.0.1, run from the cached jars.

    ``port``/``controller_port`` default to free loopback ports picked at the first
    :meth:`start`; later starts reuse them, so clients keep their bootstrap address
    across :meth:`stop` (``keep_data=True``) + :meth:`start`, or :meth:`restart`.

    >>> with KafkaBroker() as kafka:
    ...     print(kafka.bootstrap, kafka.version, kafka.start_seconds)
    """

    node_id = 1

    def __init__(
        self,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        start_timeout: float = DEFAULT_KAFKA_START_TIMEOUT,
        libs: Path | None = None,
        extra_config: Mapping[str, str] | None = None,
        jvm_opts: tuple[str, ...] = KAFKA_JVM_OPTS,
        cds: bool | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.start_timeout = start_timeout
        self.libs = libs
        self.extra_config = dict(extra_config or {})
        self.jvm_opts = tuple(jvm_opts)
        self.cds = _env_flag("REVOCAST_KAFKA_CDS", default=True) if cds is None else cds
        self._cds_dump: tuple[Path, Path] | None = None  # (being written, final name)
        self.version: str = kafka_version() if libs is None else _libs_version(libs)
        self.workdir: Path | None = None
        self.start_seconds: float | None = None
        self.cluster_id: str | None = None
        self._explicit_ports = (port is not None, controller_port is not None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- addresses and files

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, the value for ``KAFKA_BOOTSTRAP_SERVERS``."""
        if self.port is None:
            raise DevstackError("the broker has no port yet: call start() first")
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """The broker's log4j file (``broker.log`` in :attr:`workdir`)."""
        return None if self.workdir is None else self.workdir / "broker.log"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"<KafkaBroker {self.version} {LOOPBACK}:{self.port} {state}>"

    # -- lifecycle

    def start(self) -> Self:
        """Start the broker and block until it answers; returns ``self``.

        Reuses the data dir left by ``stop(keep_data=True)``, else formats a fresh one.
        """
        if self.running:
            return self
        begin = time.monotonic()
        self._claim_ports()
        java = find_java()
        libs = self.libs or ensure_kafka_jars()
        self.version = _libs_version(libs)
        classpath = str(libs / "*")

        if self.workdir is None or not self.workdir.is_dir():
            self.workdir = Path(tempfile.mkdtemp(prefix="revocast-kafka-"))
        workdir = self.workdir
        data_dir = workdir / "data"
        config = workdir / "server.properties"
        config.write_text(self._server_properties(data_dir))
        logging_opts = (
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={workdir}",
        )
        archive = _cds_archive(java, libs) if self.cds else None
        use_cds: tuple[str, ...] = ()
        broker_cds: tuple[str, ...] = ()
        self._cds_dump = None
        if archive is not None and archive.is_file():
            use_cds = broker_cds = (f"-XX:SharedArchiveFile={archive}", CDS_QUIET)
        elif archive is not None:
            partial = archive.with_name(f"{archive.stem}.{os.getpid()}.{id(self)}.partial")
            self._cds_dump = (partial, archive)
            broker_cds = (f"-XX:ArchiveClassesAtExit={partial}", CDS_QUIET)
        if not (data_dir / "meta.properties").is_file():
            try:
                self._format(java, classpath, (*use_cds, *logging_opts), config)
            except BaseException:
                self.stop()  # the error carries the tool's output; nothing to keep
                raise

        console = workdir / "console.log"
        with console.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    *_orphan_guard(),
                    java,
                    *self.jvm_opts,
                    *broker_cds,
                    *logging_opts,
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        self._paused = False
        _LIVE.add(self)
        try:
            self._wait_ready(begin + self.start_timeout)
        except BaseException as exc:
            _terminate(self._proc, KAFKA_STOP_TIMEOUT)
            self._proc = None
            self._finish_cds_dump(keep=False)
            _LIVE.discard(self)
            if not isinstance(exc, DevstackError):  # a DevstackError names broker.log: keep it
                self.stop()
            raise
        self.start_seconds = time.monotonic() - begin
        log.info("kafka %s up on %s in %.1f s", self.version, self.bootstrap, self.start_seconds)
        return self

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM, wait up to 20 s, SIGKILL. ``keep_data=False`` also deletes the temp dir."""
        if self._proc is not None:
            code = _terminate(self._proc, KAFKA_STOP_TIMEOUT)
            self._proc = None
            self._finish_cds_dump(keep=code != -signal.SIGKILL)
        self._paused = False
        _LIVE.discard(self)
        if not keep_data and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.cluster_id = None

    def restart(self) -> Self:
        """Stop (keeping data) and start again on the same ports and data dir."""
        self.stop(keep_data=True)
        return self.start()

    def pause(self) -> None:
        """SIGSTOP the broker: connections stay open but nothing answers."""
        if not self.running:
            raise DevstackError("the broker is not running: start() it before pause()")
        assert self._proc is not None
        _signal_group(self._proc, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused broker."""
        if self._proc is not None and self._paused:
            _signal_group(self._proc, signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals

    def _finish_cds_dump(self, keep: bool) -> None:
        """Publish the class archive the JVM wrote at exit (atomically), or drop it."""
        if self._cds_dump is None:
            return
        partial, final = self._cds_dump
        self._cds_dump = None
        try:
            if keep and partial.is_file() and partial.stat().st_size > 0:
                os.replace(partial, final)
                log.info("kafka class archive written: %s", final)
            else:
                partial.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not keep the kafka class archive %s: %s", partial, exc)

    def _claim_ports(self) -> None:
        for port, explicit, env_name in (
            (self.port, self._explicit_ports[0], "REVOCAST_KAFKA_PORT"),
            (self.controller_port, self._explicit_ports[1], "REVOCAST_KAFKA_CONTROLLER_PORT"),
        ):
            if port is None:
                continue
            if explicit:
                _require_port_free(port, env_name)
            else:  # picked at the first start; a restart needs it back
                _require_port_free(
                    port, env_name, "free it to restart this broker on its first port"
                )
        if self.port is None or self.controller_port is None:
            picked = iter(p for p in _free_ports(3) if p not in (self.port, self.controller_port))
            if self.port is None:
                self.port = next(picked)
            if self.controller_port is None:
                self.controller_port = next(picked)
        if self.port == self.controller_port:
            raise DevstackError(
                f"broker and controller both asked for port {self.port}: give them different ports"
            )

    def _server_properties(self, data_dir: Path) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": f"{self.node_id}@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "auto.leader.rebalance.enable": "false",
            "log.retention.hours": "24",
            "log.retention.bytes": str(1 << 30),
            "log.segment.bytes": str(16 << 20),
            "log.retention.check.interval.ms": "60000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            **self.extra_config,
        }
        header = "# Written by devstack/launcher.py for one local KRaft node.\n"
        return header + "".join(f"{key}={value}\n" for key, value in props.items())

    def _format(
        self, java: str, classpath: str, logging_opts: tuple[str, ...], config: Path
    ) -> None:
        self.cluster_id = _random_cluster_id()
        cmd = [
            java,
            *FORMAT_JVM_OPTS,
            *logging_opts,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(config),
        ]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DevstackError(
                f"kafka storage format did not finish within {self.start_timeout:g} s: "
                "the machine may be overloaded; retry or raise the start timeout"
            ) from None
        if done.returncode != 0:
            tail = " | ".join(
                _one_line(ln, 200) for ln in _telling_lines(done.stdout + done.stderr, 3)
            )
            raise DevstackError(
                f"kafka storage format failed (exit {done.returncode}): {tail or '(no output)'}"
            )

    def _early_exit_error(self, code: int) -> DevstackError:
        assert self.workdir is not None
        tail = _tail_summary(self.workdir / "console.log", self.workdir / "broker.log")
        hint = ""
        if "UnsupportedClassVersionError" in tail:
            hint = " (Kafka 4 needs Java 17 or newer: install openjdk-17-jre-headless)"
        elif "Address already in use" in tail:
            hint = " (a port was taken meanwhile: retry, or pick another REVOCAST_KAFKA_PORT)"
        return DevstackError(
            f"kafka broker exited early with code {code}{hint}: {tail} "
            f"[logs: {self.workdir}/broker.log, console.log]"
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        assert self.port is not None
        last_problem = "no TCP answer"
        not_yet = _probe_errors()
        while True:
            code = self._proc.poll()
            if code is not None:
                raise self._early_exit_error(code)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if _tcp_answers(LOOPBACK, self.port, timeout=min(0.5, remaining)):
                try:
                    if _broker_registered(self.bootstrap, self.node_id, min(5.0, remaining)):
                        return
                    last_problem = "broker not registered yet"
                except not_yet as exc:
                    last_problem = _one_line(f"{type(exc).__name__}: {exc}", 120)
                except Exception as exc:
                    # Not the broker being slow: the client library itself failed.
                    raise DevstackError(
                        "the kafka-python readiness probe failed on the client side "
                        f"({_one_line(f'{type(exc).__name__}: {exc}', 160)}): fix the Python "
                        "environment (kafka-python version, warning filters)"
                    ) from exc
            time.sleep(0.2)
        assert self.workdir is not None
        tail = _tail_summary(self.workdir / "console.log", self.workdir / "broker.log", lines=3)
        raise DevstackError(
            f"kafka broker did not answer on {self.bootstrap} within {self.start_timeout:g} s "
            f"({last_problem}); last log lines: {tail} [logs: {self.workdir}/broker.log, "
            "console.log]; a slow machine may need a longer start timeout"
        )


def _probe_errors() -> tuple[type[BaseException], ...]:
    """What a readiness probe raises while the broker is still coming up."""
    from kafka.errors import KafkaError

    return (KafkaError, OSError, TimeoutError)


def _admin_client(bootstrap: str, timeout: float) -> Any:
    from kafka.admin import KafkaAdminClient

    ms = max(100, int(timeout * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="revocast-devstack-probe",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
        reconnect_backoff_max_ms=500,
    )


def _broker_registered(bootstrap: str, node_id: int, timeout: float) -> bool:
    """True once ``node_id`` is an unfenced broker in DescribeCluster (ready for acks=all)."""
    admin = _admin_client(bootstrap, timeout)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    for broker in cluster.get("brokers", []):
        if broker.get("broker_id") == node_id and not broker.get("is_fenced", False):
            return True
    return False


def _probe_external_kafka(bootstrap: str, timeout: float) -> str:
    """Wait up to ``timeout`` s for an external broker; return a best-effort version label."""
    deadline = time.monotonic() + timeout
    servers = [s for s in bootstrap.split(",") if s.strip()]
    try:
        addresses = [_split_hostport(s, 9092) for s in servers]
    except ValueError:
        raise DevstackError(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not host:port[,host:port...]: fix or unset it"
        ) from None
    failure = DevstackError(
        f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} did not answer within {timeout:g} s: start that "
        "broker or unset the variable to use the local launcher"
    )
    if not addresses:
        raise failure
    # Plain TCP first: cheap, quiet, and it keeps kafka-python's error logging out of the
    # common "nothing listens there" case.
    while not any(_tcp_answers(h, p, timeout=0.5) for h, p in addresses):
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(0.2)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise failure
        try:
            admin = _admin_client(bootstrap, remaining)
        except Exception:
            time.sleep(0.2)
            continue
        try:
            api = admin._manager.broker_version  # private, hence best effort
            admin.describe_cluster()
        except Exception:
            time.sleep(0.2)
            continue
        finally:
            admin.close()
        if isinstance(api, tuple) and api:
            return "external (API " + ".".join(str(part) for part in api) + ")"
        return "external"


# --------------------------------------------------------------------------- Redis


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
            self.port = _free_ports(1)[0]
        else:
            _require_port_free(self.port, "REVOCAST_REDIS_PORT")
        self.version = _redis_version(exe)
        self.workdir = Path(tempfile.mkdtemp(prefix="revocast-redis-"))
        logfile = self.workdir / "redis.log"
        cmd = [
            *_orphan_guard(),
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
        _LIVE.add(self)
        deadline = begin + self.start_timeout
        while not _redis_ping(LOOPBACK, self.port):
            code = self._proc.poll()
            if code is not None or time.monotonic() >= deadline:
                tail = _tail_summary(logfile)
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
            _terminate(self._proc, REDIS_STOP_TIMEOUT)
            self._proc = None
        _LIVE.discard(self)
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


def _probe_external_redis(url: str, timeout: float) -> None:
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


# --------------------------------------------------------------------------- Docker


def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers: ``/_ping`` on its socket, else ``docker info``."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://") or not host:
        path = host.removeprefix("unix://") or "/var/run/docker.sock"
        if os.path.exists(path):
            return _docker_socket_ping(path, timeout)
        if host:
            return False
    cli = shutil.which("docker")
    if not cli:
        return False
    try:
        done = subprocess.run(
            [cli, "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _docker_socket_ping(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = s.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Services:
    """Where the Kafka broker and Redis server are, and who provides them.

    ``source`` is ``"env"``, ``"testcontainers"`` or ``"local"``; when Kafka and Redis
    come from different places it is ``"<kafka source>+<redis source>"``.
    ``kafka_broker`` is the :class:`KafkaBroker` when the local launcher started one
    (tests use it to stop and restart the broker), else ``None``.
    """

    kafka_bootstrap: str
    redis_url: str
    kafka_version: str
    source: str
    kafka_broker: KafkaBroker | None = field(default=None, repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """The variables that point revocast at these services."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "REDIS_URL": self.redis_url}


@contextlib.contextmanager
def resolve_services(
    *,
    env_timeout: float = DEFAULT_ENV_TIMEOUT,
    kafka_start_timeout: float = DEFAULT_KAFKA_START_TIMEOUT,
) -> Iterator[Services]:
    """Yield :class:`Services`, starting whatever is missing; stop it all on exit.

    Kafka and Redis are resolved independently: the environment variable when set
    (checked for an answer within ``env_timeout`` s), else testcontainers when a Docker
    engine answers, else the local launcher.
    """
    with contextlib.ExitStack() as stack:
        docker: bool | None = None

        def use_docker() -> bool:
            nonlocal docker
            if docker is None:
                docker = _env_flag("REVOCAST_TESTCONTAINERS", True) and docker_available()
            return docker

        broker: KafkaBroker | None = None
        env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if env_bootstrap:
            version = _probe_external_kafka(env_bootstrap, env_timeout)
            bootstrap, kafka_source = env_bootstrap, "env"
        elif use_docker():
            bootstrap, version = stack.enter_context(_kafka_container(kafka_start_timeout))
            kafka_source = "testcontainers"
        else:
            broker = KafkaBroker(
                port=_env_port("REVOCAST_KAFKA_PORT"), start_timeout=kafka_start_timeout
            )
            stack.enter_context(broker)
            bootstrap, version, kafka_source = broker.bootstrap, broker.version, "local"

        env_redis = os.environ.get("REDIS_URL", "").strip()
        if env_redis:
            _probe_external_redis(env_redis, env_timeout)
            redis_url, redis_source = env_redis, "env"
        elif use_docker():
            redis_url = stack.enter_context(_redis_container())
            redis_source = "testcontainers"
        else:
            redis_server = stack.enter_context(RedisServer(port=_env_port("REVOCAST_REDIS_PORT")))
            redis_url, redis_source = redis_server.url, "local"

        source = kafka_source if kafka_source == redis_source else f"{kafka_source}+{redis_source}"
        yield Services(bootstrap, redis_url, version, source, kafka_broker=broker)


@contextlib.contextmanager
def _kafka_container(start_timeout: float) -> Iterator[tuple[str, str]]:
    image = os.environ.get("REVOCAST_KAFKA_IMAGE") or DEFAULT_KAFKA_IMAGE
    try:
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer(image).with_kraft()
    except Exception as exc:
        raise DevstackError(f"testcontainers cannot use {image}: {exc}") from exc
    try:
        container.start(timeout=int(start_timeout))
    except Exception as exc:
        with contextlib.suppress(Exception):
            container.stop()
        raise DevstackError(
            f"testcontainers could not start {image}: {_one_line(str(exc), 160)}; "
            "set REVOCAST_TESTCONTAINERS=0 to use the local launcher"
        ) from exc
    try:
        yield container.get_bootstrap_server(), image
    finally:
        container.stop()


@contextlib.contextmanager
def _redis_container() -> Iterator[str]:
    image = os.environ.get("REVOCAST_REDIS_IMAGE") or DEFAULT_REDIS_IMAGE
    try:
        from testcontainers.community.redis import RedisContainer

        container = RedisContainer(image)
    except Exception as exc:
        raise DevstackError(f"testcontainers cannot use {image}: {exc}") from exc
    try:
        container.start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(container.port)
    except Exception as exc:
        with contextlib.suppress(Exception):
            container.stop()
        raise DevstackError(
            f"testcontainers could not start {image}: {_one_line(str(exc), 160)}; "
            "set REVOCAST_TESTCONTAINERS=0 to use the local launcher"
        ) from exc
    try:
        yield f"redis://{host}:{port}/0"
    finally:
        container.stop()
