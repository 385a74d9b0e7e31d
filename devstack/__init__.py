"""devstack: local Kafka (one node, a 3-node cluster, or secured) and Redis for revocast.

Installed with revocast and run as ``revocast dev up|run|fetch`` (or ``python -m
devstack``) from any directory. Modules:

* :mod:`devstack.jars` - Kafka's jars from Maven Central into a cache;
* :mod:`devstack.broker` - one KRaft node (:class:`KafkaBroker`);
* :mod:`devstack.cluster` - three nodes, RF 3, ``min.insync.replicas=2`` (:class:`KafkaCluster`);
* :mod:`devstack.secure` - TLS with a generated CA, SCRAM-SHA-512 users, ACLs;
* :mod:`devstack.redis_server` - Debian's ``redis-server`` (:class:`RedisServer`);
* :mod:`devstack.launcher` - where the tests' services come from (:func:`resolve_services`).
"""

from devstack.broker import KafkaBroker
from devstack.cluster import KafkaCluster
from devstack.jars import ensure_kafka_jars, kafka_version
from devstack.launcher import Services, resolve_services
from devstack.process import DevstackError
from devstack.redis_server import RedisServer
from devstack.secure import SecureSetup

__all__ = [
    "DevstackError",
    "KafkaBroker",
    "KafkaCluster",
    "RedisServer",
    "SecureSetup",
    "Services",
    "ensure_kafka_jars",
    "kafka_version",
    "resolve_services",
]
