"""Create revocast's three topics with safe settings, and say when existing ones are unsafe.

What :func:`ensure_topics` guarantees:

* Missing topics are created with the requested partitions, replication factor and
  ``min.insync.replicas``; events and dead-letter topics get ``cleanup.policy=delete``,
  ``retention.bytes=-1`` and ``retention.ms`` = longest credential lifetime + margin,
  so a consumer that replays the topic at start sees every revocation that can still
  matter. Receipts are measurements, not state: their retention may be shorter.
* Existing topics are not altered unless asked. Their actual settings are read back
  (``describe_topics`` + ``describe_configs``) and every difference that matters is
  logged as a warning and returned in the report: retention shorter than the
  lifetime it must cover, size-based retention, compaction (which would keep only the
  last event per subject), and partitions / replication factor / min ISR that differ.
* With ``alter_retention=True`` a state topic (events, dead letters) whose
  ``retention.ms`` is shorter than required is raised to the required value with an
  incremental config change (no other setting is touched). Retention is never lowered.

What it does not do: repartition, lower a retention, or change any other config of a
topic it did not create. An operator decides that; the warning says what to change.

    report = ensure_topics("127.0.0.1:9092", TopicNames(), partitions=3,
                           replication_factor=1, min_insync_replicas=1,
                           max_credential_lifetime=timedelta(hours=24),
                           margin=timedelta(hours=1))
    report.ok        # False when any warning was raised
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.admin._configs import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from schemas import BrokerUnavailableError, ConfigError, TopicNames

__all__ = [
    "TopicState",
    "TopicsReport",
    "admin_client",
    "ensure_topics",
    "events_retention_ms",
    "human_duration",
    "require_reachable",
    "topic_partitions",
]

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC = 3
_TOPIC_EXISTS = 36
# getaddrinfo's answers for "this name does not exist" (EAI_NODATA is not on every platform).
_NO_SUCH_HOST = frozenset(
    code
    for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None), socket.EAI_FAIL)
    if code is not None
)
_CHECKED_CONFIGS = ["retention.ms", "retention.bytes", "min.insync.replicas", "cleanup.policy"]


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for server in bootstrap.split(","):
        server = server.strip().split("://", 1)[-1]
        if not server:
            continue
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"bootstrap server {server!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ConfigError("no Kafka bootstrap servers configured (KAFKA_BOOTSTRAP_SERVERS)")
    return out


def require_reachable(bootstrap: str, timeout: float) -> None:
    """Wait up to ``timeout`` s for any bootstrap server to accept a TCP connection.

    kafka-python clients whose constructor fails to bootstrap leak their IO thread and
    sockets; probing first keeps a process that retries against a stopped broker (the
    HTTP API does) from leaking one thread per attempt. A host name that does not exist
    (``EAI_NONAME``) is not retried: waiting cannot make it resolve, so the error comes at
    once; a temporary resolver failure (``EAI_AGAIN``) is retried like a refused connection.
    """
    addresses = _addresses(bootstrap)
    deadline = time.monotonic() + timeout
    reason = "no answer"
    unknown: set[str] = set()
    while True:
        for host, port in addresses:
            if host in unknown:
                continue
            remaining = deadline - time.monotonic()
            try:
                with socket.create_connection((host, port), timeout=max(0.05, min(1.0, remaining))):
                    return
            except ConnectionRefusedError:
                reason = "connection refused"
            except TimeoutError:
                reason = "timed out"
            except socket.gaierror as exc:
                reason = f"unknown host {host!r}"
                if exc.errno in _NO_SUCH_HOST:
                    unknown.add(host)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
        if unknown >= {host for host, _ in addresses}:
            names = ", ".join(repr(h) for h in sorted(unknown))
            raise BrokerUnavailableError(
                f"Kafka bootstrap server host {names} does not resolve: check "
                "KAFKA_BOOTSTRAP_SERVERS / --bootstrap-servers"
            )
        if time.monotonic() + 0.1 >= deadline:
            raise BrokerUnavailableError(
                f"Kafka at {bootstrap} did not answer within {timeout:g} s ({reason})"
            )
        time.sleep(0.1)


@contextmanager
def admin_client(
    bootstrap: str,
    *,
    timeout: float,
    client_id: str = "revocast-admin",
    kafka_options: Mapping[str, Any] | None = None,
) -> Iterator[KafkaAdminClient]:
    """A connected admin client, or :class:`BrokerUnavailableError` within ``timeout`` s.

    ``kafka_options`` are extra kafka-python options: security
    (``KafkaSecurity.to_kafka_python()``) and the like.
    """
    require_reachable(bootstrap, timeout)
    ms = max(100, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=1000,
            **(kafka_options or {}),
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"Kafka at {bootstrap} did not answer within {timeout:g} s ({type(exc).__name__})"
        ) from None
    try:
        yield admin
    finally:
        admin.close()


def topic_partitions(admin: KafkaAdminClient, topic: str) -> list[int] | None:
    """The partition ids of ``topic``, or ``None`` when it does not exist (never auto-creates)."""
    info = _describe(admin, [topic]).get(topic)
    if info is None:
        return None
    return sorted(p["partition_index"] for p in info["partitions"])


def _describe(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, Any]]:
    try:
        described = admin.describe_topics(names)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot describe topics {names}: {exc}") from None
    out: dict[str, dict[str, Any]] = {}
    for info in described:
        if info.get("error_code", 0) == 0:
            out[str(info["name"])] = info
        elif info.get("error_code") != _UNKNOWN_TOPIC:
            raise BrokerUnavailableError(
                f"cannot describe topic {info.get('name')}: error code {info.get('error_code')}"
            )
    return out


@dataclass(frozen=True)
class TopicState:
    """One topic as the broker reports it after :func:`ensure_topics`."""

    role: str
    """``"events"``, ``"receipts"`` or ``"dead_letter"``."""
    name: str
    created: bool
    partitions: int
    replication_factor: int
    retention_ms: int | None
    """``-1`` means forever; ``None`` if the broker did not say."""
    min_insync_replicas: int | None
    warnings: tuple[str, ...] = ()
    altered_from_ms: int | None = None
    """The retention.ms this run raised (``alter_retention=True``), or ``None``."""

    @property
    def retention(self) -> str:
        """``retention_ms`` for people: ``25 h``, ``7 d``, ``forever``, ``unknown``."""
        return "unknown" if self.retention_ms is None else human_duration(self.retention_ms)


@dataclass(frozen=True)
class TopicsReport:
    topics: tuple[TopicState, ...]

    @property
    def warnings(self) -> list[str]:
        return [w for t in self.topics for w in t.warnings]

    @property
    def ok(self) -> bool:
        return not self.warnings

    def by_role(self, role: str) -> TopicState:
        for topic in self.topics:
            if topic.role == role:
                return topic
        raise KeyError(role)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def human_duration(ms: int) -> str:
    """Milliseconds for people: ``forever`` (negative), ``500 ms``, ``90 s``, ``15 min``,
    ``25 h``, ``7 d`` (days only when whole)."""
    if ms < 0:
        return "forever"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200 and seconds % 3600:
        return f"{seconds / 60:.4g} min"
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    return f"{seconds / 3600:.4g} h"


def ensure_topics(
    bootstrap: str,
    topics: TopicNames,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    max_credential_lifetime: timedelta = timedelta(hours=24),
    margin: timedelta = timedelta(hours=1),
    receipts_retention: timedelta = timedelta(hours=24),
    timeout: float = 10.0,
    alter_retention: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
) -> TopicsReport:
    """Create what is missing, check what exists; see the module docstring.

    Raises :class:`ConfigError` for impossible settings (``min_insync_replicas >
    replication_factor``, a replication factor the cluster cannot place) and
    :class:`BrokerUnavailableError` when the broker does not answer in ``timeout`` s.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be >= 1, got {partitions}")
    if replication_factor < 1:
        raise ConfigError(f"replication_factor must be >= 1, got {replication_factor}")
    if not 1 <= min_insync_replicas <= replication_factor:
        raise ConfigError(
            f"min_insync_replicas must be between 1 and replication_factor ({replication_factor}), "
            f"got {min_insync_replicas}: no write could ever be acknowledged"
        )
    for name, value in (
        ("max_credential_lifetime", max_credential_lifetime),
        ("receipts_retention", receipts_retention),
    ):
        if value <= timedelta(0):
            raise ConfigError(f"{name} must be positive, got {value}")
    if margin < timedelta(0):
        raise ConfigError(f"margin must not be negative, got {margin}")

    required_ms = _ms(max_credential_lifetime + margin)
    wanted: dict[str, tuple[str, dict[str, str]]] = {}
    state_configs = {
        "retention.ms": str(required_ms),
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": str(min_insync_replicas),
    }
    wanted[topics.events] = ("events", state_configs)
    wanted[topics.dead_letter] = ("dead_letter", state_configs)
    wanted[topics.receipts] = (
        "receipts",
        {
            "retention.ms": str(_ms(receipts_retention)),
            "cleanup.policy": "delete",
            "min.insync.replicas": str(min_insync_replicas),
        },
    )

    with admin_client(bootstrap, timeout=timeout, kafka_options=kafka_options) as admin:
        existing = _describe(admin, list(wanted))
        missing = [name for name in wanted if name not in existing]
        created: set[str] = set()
        if missing:
            created = _create(admin, missing, wanted, partitions, replication_factor, timeout)
            existing = _describe(admin, list(wanted))
        configs = _configs(admin, list(wanted))
        raised: dict[str, int] = {}
        if alter_retention:
            raised = _raise_retention(admin, wanted, configs, required_ms)
            if raised:
                configs = _configs(admin, list(wanted))

    states = []
    for name, (role, _) in wanted.items():
        info = existing.get(name)
        if info is None:
            raise BrokerUnavailableError(f"topic {name} is still not visible after creating it")
        states.append(
            _check(
                role=role,
                name=name,
                created=name in created,
                info=info,
                config=configs.get(name, {}),
                partitions=partitions,
                replication_factor=replication_factor,
                min_insync_replicas=min_insync_replicas,
                required_ms=required_ms,
                altered_from_ms=raised.get(name),
            )
        )
    report = TopicsReport(tuple(states))
    for warning in report.warnings:
        log.warning("%s", warning)
    return report


def _raise_retention(
    admin: KafkaAdminClient,
    wanted: dict[str, tuple[str, dict[str, str]]],
    configs: dict[str, dict[str, str | None]],
    required_ms: int,
) -> dict[str, int]:
    """Raise retention.ms of the state topics that keep less than ``required_ms``."""
    short = {
        name: current
        for name, (role, _) in wanted.items()
        if role in ("events", "dead_letter")
        and (current := _int(configs.get(name, {}).get("retention.ms"))) is not None
        and 0 <= current < required_ms
    }
    if not short:
        return {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": str(required_ms)})
        for name in short
    ]
    try:
        result = admin.alter_configs(resources, incremental=True)
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"cannot alter the retention of {sorted(short)}: {exc}"
        ) from None
    for name, outcome in result.get("topic", {}).items():
        if outcome != "OK":  # kafka-python reports each resource as "OK" or the error text
            raise ConfigError(f"cannot alter retention.ms of {name}: {outcome}")
    for name, current in short.items():
        log.info("raised retention.ms of %s from %d to %d", name, current, required_ms)
    return short


def events_retention_ms(
    bootstrap: str,
    topics: TopicNames,
    *,
    timeout: float,
    kafka_options: Mapping[str, Any] | None = None,
) -> int | None:
    """The ``retention.ms`` of the events topic (``-1`` forever), or ``None`` if it is missing."""
    with admin_client(bootstrap, timeout=timeout, kafka_options=kafka_options) as admin:
        if topics.events not in _describe(admin, [topics.events]):
            return None
        value = _configs(admin, [topics.events]).get(topics.events, {}).get("retention.ms")
    return _int(value)


def _create(
    admin: KafkaAdminClient,
    names: list[str],
    wanted: dict[str, tuple[str, dict[str, str]]],
    partitions: int,
    replication_factor: int,
    timeout: float,
) -> set[str]:
    request = {
        name: {
            "num_partitions": partitions,
            "replication_factor": replication_factor,
            "configs": wanted[name][1],
        }
        for name in names
    }
    try:
        result = admin.create_topics(request, timeout_ms=int(timeout * 1000), raise_errors=False)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot create topics {names}: {exc}") from None
    created: set[str] = set()
    for topic in result.get("topics", []):
        code = topic.get("error_code", 0)
        if code == 0:
            created.add(str(topic["name"]))
            log.info("created topic %s", topic["name"])
        elif code != _TOPIC_EXISTS:  # lost a race with another creator: fine, check it below
            raise ConfigError(
                f"cannot create topic {topic['name']}: "
                f"{topic.get('error_message') or f'error code {code}'}"
            )
    try:
        admin.wait_for_topics(sorted(created), timeout_ms=int(timeout * 1000))
    except KafkaError as exc:
        raise BrokerUnavailableError(f"created topics did not get leaders in time: {exc}") from None
    # Topic metadata and configs can lag a moment behind creation on KRaft.
    time.sleep(0.05)
    return created


def _configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str | None]]:
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, list(_CHECKED_CONFIGS)) for name in names
    ]
    try:
        described = admin.describe_configs(resources, config_filter="all")
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read topic configs: {exc}") from None
    topics: dict[str, dict[str, Any]] = described.get("topic", {})
    return {
        name: {key: entry.get("value") for key, entry in cfg.items()}
        for name, cfg in topics.items()
    }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check(
    *,
    role: str,
    name: str,
    created: bool,
    info: dict[str, Any],
    config: dict[str, str | None],
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int,
    required_ms: int,
    altered_from_ms: int | None = None,
) -> TopicState:
    parts = info.get("partitions") or []
    actual_partitions = len(parts)
    actual_rf = min((len(p.get("replica_nodes") or []) for p in parts), default=0)
    retention_ms = _int(config.get("retention.ms"))
    retention_bytes = _int(config.get("retention.bytes"))
    min_isr = _int(config.get("min.insync.replicas"))
    cleanup = config.get("cleanup.policy") or ""
    warnings: list[str] = []
    holds_state = role in ("events", "dead_letter")

    if holds_state and retention_ms is not None and 0 <= retention_ms < required_ms:
        warnings.append(
            f"{name}: retention.ms={retention_ms} ({human_duration(retention_ms)}) is shorter "
            f"than the longest credential lifetime + margin ({human_duration(required_ms)}): "
            "a consumer that "
            "replays the topic would forget revocations of credentials that are still valid; "
            "raise it with `revocast topics ensure --alter-retention` (same lifetime and margin)"
        )
    if holds_state and retention_bytes is not None and retention_bytes >= 0:
        warnings.append(
            f"{name}: retention.bytes={retention_bytes} can delete revocations before "
            "retention.ms; set retention.bytes=-1"
        )
    if holds_state and "compact" in cleanup:
        warnings.append(
            f"{name}: cleanup.policy={cleanup} keeps only the last event per subject and "
            "drops earlier revocations; use cleanup.policy=delete"
        )
    if actual_partitions != partitions:
        warnings.append(f"{name}: has {actual_partitions} partitions, {partitions} requested")
    if actual_rf != replication_factor:
        warnings.append(
            f"{name}: replication factor is {actual_rf}, {replication_factor} requested"
        )
    if min_isr is not None and min_isr != min_insync_replicas:
        warnings.append(f"{name}: min.insync.replicas={min_isr}, {min_insync_replicas} requested")
    return TopicState(
        role=role,
        name=name,
        created=created,
        partitions=actual_partitions,
        replication_factor=actual_rf,
        retention_ms=retention_ms,
        min_insync_replicas=min_isr,
        warnings=tuple(warnings),
        altered_from_ms=altered_from_ms,
    )
