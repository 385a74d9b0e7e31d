"""devstack: the local Kafka + Redis stack for revocast's tests and benchmarks.

A repository tool run from the repo root (``python -m devstack up|run|fetch``), not part
of the installed library. See :mod:`devstack.launcher`.
"""

from devstack.launcher import (
    DevstackError,
    KafkaBroker,
    RedisServer,
    Services,
    ensure_kafka_jars,
    kafka_version,
    resolve_services,
)

__all__ = [
    "DevstackError",
    "KafkaBroker",
    "RedisServer",
    "Services",
    "ensure_kafka_jars",
    "kafka_version",
    "resolve_services",
]
