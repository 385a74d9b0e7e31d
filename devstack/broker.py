"""One KRaft Kafka node (broker + controller in one JVM) on 127.0.0.1, run from cached jars.

:class:`KafkaBroker` is the single-node stack the tests, the demo and the benchmark use,
and the building block of :class:`devstack.cluster.KafkaCluster` (three such nodes
sharing a quorum). A node's security layout (TLS, SASL, ACLs) comes from a
:class:`NodeSecurity` (see :mod:`devstack.secure`); without one it listens in
PLAINTEXT, on loopback only.

Guarantees: :meth:`KafkaBroker.start` returns only once the node is an unfenced broker
in DescribeCluster (ready for acks=all writes), or raises a one-line
:class:`DevstackError` naming the log to read. Ports picked at the first start are kept
across restarts, so clients keep their bootstrap address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from devstack.jars import (
    HERE,
    cds_archive,
    ensure_kafka_jars,
    kafka_version,
    libs_version,
    random_cluster_id,
)
from devstack.process import (
    LIVE,
    LOOPBACK,
    DevstackError,
    env_flag,
    find_java,
    free_ports,
    one_line,
    orphan_guard,
    require_port_free,
    signal_group,
    split_hostport,
    tail_summary,
    tcp_answers,
    telling_lines,
    terminate,
)

log = logging.getLogger("devstack")

LOG4J_CONFIG = HERE / "log4j2.properties"
DEFAULT_KAFKA_START_TIMEOUT = 60.0
KAFKA_STOP_TIMEOUT = 20.0

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


class NodeSecurity(Protocol):
    """A node's security layout: listeners, TLS and SASL settings, bootstrap users.

    ``listener_name`` is the client (and inter-broker) listener; the controller
    listener is always named ``CONTROLLER``.
    """

    listener_name: str
    listener_protocol: str
    controller_protocol: str

    def server_properties(self) -> dict[str, str]:
        """Properties added to every node's ``server.properties``."""
        ...

    def format_args(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments (e.g. ``--add-scram``)."""
        ...

    def admin_options(self) -> dict[str, Any]:
        """kafka-python options of a super user, for readiness probes and set-up."""
        ...


class KafkaBroker:
    """One KRaft Kafka node (broker + controller) on 127.0.0.1, run from the cached jars.

    ``port``/``controller_port`` default to free loopback ports picked at the first
    :meth:`start`; later starts reuse them, so clients keep their bootstrap address
    across :meth:`stop` (``keep_data=True``) + :meth:`start`, :meth:`restart`, or
    :meth:`kill` + :meth:`start`.

    A cluster member gets its ``node_id``, the shared ``cluster_id`` and ``voters``
    (``"1@127.0.0.1:P1,2@..."``) from :class:`~devstack.cluster.KafkaCluster`, and a
    ``replication`` factor for the internal topics.

    >>> with KafkaBroker() as kafka:
    ...     print(kafka.bootstrap, kafka.version, kafka.start_seconds)
    """

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
        node_id: int = 1,
        cluster_id: str | None = None,
        voters: str | None = None,
        replication: int = 1,
        security: NodeSecurity | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.start_timeout = start_timeout
        self.libs = libs
        self.extra_config = dict(extra_config or {})
        self.jvm_opts = tuple(jvm_opts)
        self.cds = env_flag("REVOCAST_KAFKA_CDS", default=True) if cds is None else cds
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.voters = voters
        self.replication = replication
        self.security = security
        self._cds_dump: tuple[Path, Path] | None = None  # (being written, final name)
        self.version: str = kafka_version() if libs is None else libs_version(libs)
        self.workdir: Path | None = None
        self.start_seconds: float | None = None
        self._explicit_ports = (port is not None, controller_port is not None)
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._launched_at: float | None = None

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
        return f"<KafkaBroker {self.version} node {self.node_id} {LOOPBACK}:{self.port} {state}>"

    # -- lifecycle

    def start(self) -> Self:
        """Start the node and block until it answers; returns ``self``.

        Reuses the data dir left by ``stop(keep_data=True)`` or :meth:`kill`, else
        formats a fresh one.
        """
        if self.running:
            return self
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Format (when new) and start the JVM without waiting for it to answer.

        A cluster launches every node first (a quorum must form before any node can
        register), then calls :meth:`wait_ready` on each.
        """
        if self.running:
            return
        begin = time.monotonic()
        self.claim_ports()
        java = find_java()
        libs = self.libs or ensure_kafka_jars()
        self.version = libs_version(libs)
        classpath = str(libs / "*")

        if self.workdir is None or not self.workdir.is_dir():
            self.workdir = Path(tempfile.mkdtemp(prefix=f"revocast-kafka-{self.node_id}-"))
        workdir = self.workdir
        data_dir = workdir / "data"
        config = workdir / "server.properties"
        config.write_text(self._server_properties(data_dir))
        logging_opts = (
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={workdir}",
        )
        archive = cds_archive(java, libs) if self.cds else None
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
                    *orphan_guard(),
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
        self._launched_at = begin
        LIVE.add(self)

    def wait_ready(self, deadline: float | None = None) -> None:
        """Block until this node is an unfenced broker; stop it and raise otherwise."""
        if self._proc is None or self._launched_at is None:
            raise DevstackError("the broker was not launched: call start() or launch() first")
        begin = self._launched_at
        if deadline is None:
            deadline = begin + self.start_timeout
        try:
            self._wait_ready(deadline)
        except BaseException as exc:
            terminate(self._proc, KAFKA_STOP_TIMEOUT)
            self._proc = None
            self._finish_cds_dump(keep=False)
            LIVE.discard(self)
            if not isinstance(exc, DevstackError):  # a DevstackError names broker.log: keep it
                self.stop()
            raise
        self.start_seconds = time.monotonic() - begin
        log.info("kafka %s up on %s in %.1f s", self.version, self.bootstrap, self.start_seconds)

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM, wait up to 20 s, SIGKILL. ``keep_data=False`` also deletes the temp dir."""
        if self._proc is not None:
            code = terminate(self._proc, KAFKA_STOP_TIMEOUT)
            self._proc = None
            self._finish_cds_dump(keep=code != -signal.SIGKILL)
        self._paused = False
        LIVE.discard(self)
        if not keep_data and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self) -> None:
        """SIGKILL the node (a crash: no clean shutdown); its data stays for a restart."""
        if self._proc is not None:
            signal_group(self._proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(KAFKA_STOP_TIMEOUT)
            self._proc = None
            self._finish_cds_dump(keep=False)
        self._paused = False
        LIVE.discard(self)

    def restart(self) -> Self:
        """Stop (keeping data) and start again on the same ports and data dir."""
        self.stop(keep_data=True)
        return self.start()

    def pause(self) -> None:
        """SIGSTOP the broker: connections stay open but nothing answers."""
        if not self.running:
            raise DevstackError("the broker is not running: start() it before pause()")
        assert self._proc is not None
        signal_group(self._proc, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused broker."""
        if self._proc is not None and self._paused:
            signal_group(self._proc, signal.SIGCONT)
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

    def claim_ports(self) -> None:
        """Check the configured ports are free, or pick free ones (kept for restarts)."""
        for port, explicit, env_name in (
            (self.port, self._explicit_ports[0], "REVOCAST_KAFKA_PORT"),
            (self.controller_port, self._explicit_ports[1], "REVOCAST_KAFKA_CONTROLLER_PORT"),
        ):
            if port is None:
                continue
            if explicit:
                require_port_free(port, env_name)
            else:  # picked at the first start; a restart needs it back
                require_port_free(
                    port, env_name, "free it to restart this broker on its first port"
                )
        if self.port is None or self.controller_port is None:
            picked = iter(p for p in free_ports(3) if p not in (self.port, self.controller_port))
            if self.port is None:
                self.port = next(picked)
            if self.controller_port is None:
                self.controller_port = next(picked)
        if self.port == self.controller_port:
            raise DevstackError(
                f"broker and controller both asked for port {self.port}: give them different ports"
            )

    def _server_properties(self, data_dir: Path) -> str:
        name = self.security.listener_name if self.security else "PLAINTEXT"
        protocol = self.security.listener_protocol if self.security else "PLAINTEXT"
        controller = self.security.controller_protocol if self.security else "PLAINTEXT"
        voters = self.voters or f"{self.node_id}@{LOOPBACK}:{self.controller_port}"
        rf = str(self.replication)
        min_isr = str(min(2, self.replication))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{name}://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"{name}://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": name,
            "listener.security.protocol.map": f"{name}:{protocol},CONTROLLER:{controller}",
            "log.dirs": str(data_dir),
            "num.partitions": "3",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "auto.leader.rebalance.enable": "false",
            "unclean.leader.election.enable": "false",
            "log.retention.hours": "24",
            "log.retention.bytes": str(1 << 30),
            "log.segment.bytes": str(16 << 20),
            "log.retention.check.interval.ms": "60000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            **(self.security.server_properties() if self.security else {}),
            **self.extra_config,
        }
        header = f"# Written by devstack for KRaft node {self.node_id}.\n"
        return header + "".join(f"{key}={value}\n" for key, value in props.items())

    def _format(
        self, java: str, classpath: str, logging_opts: tuple[str, ...], config: Path
    ) -> None:
        if self.cluster_id is None:
            self.cluster_id = random_cluster_id()
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
            *(self.security.format_args() if self.security else []),
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
                one_line(ln, 200) for ln in telling_lines(done.stdout + done.stderr, 3)
            )
            raise DevstackError(
                f"kafka storage format failed (exit {done.returncode}): {tail or '(no output)'}"
            )

    def _early_exit_error(self, code: int) -> DevstackError:
        assert self.workdir is not None
        tail = tail_summary(self.workdir / "console.log", self.workdir / "broker.log")
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
        options = self.security.admin_options() if self.security else {}
        while True:
            code = self._proc.poll()
            if code is not None:
                raise self._early_exit_error(code)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if tcp_answers(LOOPBACK, self.port, timeout=min(0.5, remaining)):
                try:
                    if broker_registered(
                        self.bootstrap, self.node_id, min(5.0, remaining), options
                    ):
                        return
                    last_problem = "broker not registered yet"
                except not_yet as exc:
                    last_problem = one_line(f"{type(exc).__name__}: {exc}", 120)
                except Exception as exc:
                    # Not the broker being slow: the client library itself failed.
                    raise DevstackError(
                        "the kafka-python readiness probe failed on the client side "
                        f"({one_line(f'{type(exc).__name__}: {exc}', 160)}): fix the Python "
                        "environment (kafka-python version, warning filters)"
                    ) from exc
            time.sleep(0.2)
        assert self.workdir is not None
        tail = tail_summary(self.workdir / "console.log", self.workdir / "broker.log", lines=3)
        raise DevstackError(
            f"kafka broker did not answer on {self.bootstrap} within {self.start_timeout:g} s "
            f"({last_problem}); last log lines: {tail} [logs: {self.workdir}/broker.log, "
            "console.log]; a slow machine may need a longer start timeout"
        )


def _probe_errors() -> tuple[type[BaseException], ...]:
    """What a readiness probe raises while the broker is still coming up."""
    from kafka.errors import KafkaError

    return (KafkaError, OSError, TimeoutError)


def admin_client(bootstrap: str, timeout: float, options: Mapping[str, Any] | None = None) -> Any:
    """A kafka-python admin client for the launcher's own probes and set-up."""
    from kafka.admin import KafkaAdminClient

    ms = max(100, int(timeout * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="revocast-devstack-probe",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
        reconnect_backoff_max_ms=500,
        **(options or {}),
    )


def broker_registered(
    bootstrap: str, node_id: int, timeout: float, options: Mapping[str, Any] | None = None
) -> bool:
    """True once ``node_id`` is an unfenced broker in DescribeCluster (ready for acks=all)."""
    admin = admin_client(bootstrap, timeout, options)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    for broker in cluster.get("brokers", []):
        if broker.get("broker_id") == node_id and not broker.get("is_fenced", False):
            return True
    return False


def probe_external_kafka(bootstrap: str, timeout: float) -> str:
    """Wait up to ``timeout`` s for an external broker; return a best-effort version label."""
    deadline = time.monotonic() + timeout
    servers = [s for s in bootstrap.split(",") if s.strip()]
    try:
        addresses = [split_hostport(s, 9092) for s in servers]
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
    while not any(tcp_answers(h, p, timeout=0.5) for h, p in addresses):
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(0.2)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise failure
        try:
            admin = admin_client(bootstrap, remaining)
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
