"""Find or start the Kafka broker and Redis server that revocast's tests and tools run against.

Three sources, tried in order by :func:`resolve_services`:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``, each on its own, when set;
2. testcontainers, when a Docker engine answers (``REVOCAST_TESTCONTAINERS=0`` skips it);
3. the local launcher: :class:`~devstack.broker.KafkaBroker` runs ``kafka.Kafka`` (KRaft,
   one combined broker+controller) from jars that Maven copies into ``~/.cache/revocast``,
   and :class:`~devstack.redis_server.RedisServer` runs Debian's ``redis-server``. Both
   listen on 127.0.0.1 only.

The 3-node cluster (:mod:`devstack.cluster`) and the secured stack (:mod:`devstack.secure`)
are started explicitly (``revocast dev up --brokers 3 --secure``), never picked here.

Every failure a developer can fix raises :class:`DevstackError` with a one-line message
that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from devstack.broker import DEFAULT_KAFKA_START_TIMEOUT, KafkaBroker, probe_external_kafka
from devstack.process import DevstackError, env_flag, env_port, one_line
from devstack.redis_server import RedisServer, probe_external_redis

DEFAULT_ENV_TIMEOUT = 10.0
DEFAULT_KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"  # the image testcontainers' module targets
DEFAULT_REDIS_IMAGE = "redis:7.2"


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
                docker = env_flag("REVOCAST_TESTCONTAINERS", True) and docker_available()
            return docker

        broker: KafkaBroker | None = None
        env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if env_bootstrap:
            version = probe_external_kafka(env_bootstrap, env_timeout)
            bootstrap, kafka_source = env_bootstrap, "env"
        elif use_docker():
            bootstrap, version = stack.enter_context(_kafka_container(kafka_start_timeout))
            kafka_source = "testcontainers"
        else:
            broker = KafkaBroker(
                port=env_port("REVOCAST_KAFKA_PORT"), start_timeout=kafka_start_timeout
            )
            stack.enter_context(broker)
            bootstrap, version, kafka_source = broker.bootstrap, broker.version, "local"

        env_redis = os.environ.get("REDIS_URL", "").strip()
        if env_redis:
            probe_external_redis(env_redis, env_timeout)
            redis_url, redis_source = env_redis, "env"
        elif use_docker():
            redis_url = stack.enter_context(_redis_container())
            redis_source = "testcontainers"
        else:
            redis_server = stack.enter_context(RedisServer(port=env_port("REVOCAST_REDIS_PORT")))
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
            f"testcontainers could not start {image}: {one_line(str(exc), 160)}; "
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
            f"testcontainers could not start {image}: {one_line(str(exc), 160)}; "
            "set REVOCAST_TESTCONTAINERS=0 to use the local launcher"
        ) from exc
    try:
        yield f"redis://{host}:{port}/0"
    finally:
        container.stop()
