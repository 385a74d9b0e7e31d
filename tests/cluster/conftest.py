"""One 3-node KRaft cluster (devstack) for the chaos tests of this folder.

The cluster is the tests' own (free loopback ports, temporary folders), never the shared
broker: the tests kill and restart its nodes. It starts once per module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from chaos_harness import report

from devstack import DevstackError, KafkaCluster
from producer.topics import ensure_topics
from schemas import TopicNames


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    try:
        started = KafkaCluster(3).start()
    except DevstackError as exc:
        pytest.fail(
            f"cannot start the 3-node Kafka cluster: {exc}\nFix: run `make setup` (Java 17, "
            "Maven, the Kafka jars).",
            pytrace=False,
        )
    report(
        request,
        f"cluster: 3-node KRaft cluster {started.bootstrap} "
        f"started in {started.start_seconds:.1f} s",
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster_topics(cluster: KafkaCluster) -> TopicNames:
    """Fresh revocast topics on the cluster: RF 3, min.insync.replicas 2, 3 partitions."""
    names = TopicNames.prefixed(f"c-{uuid.uuid4().hex[:8]}")
    report_ = ensure_topics(
        cluster.bootstrap, names, partitions=3, replication_factor=3, min_insync_replicas=2
    )
    assert all(t.replication_factor == 3 for t in report_.topics)
    assert all(t.min_insync_replicas == 2 for t in report_.topics)
    return names
