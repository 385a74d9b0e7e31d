"""Chaos on a 3-node KRaft cluster: no acknowledged revocation is ever lost.

Each test runs the real publisher (acks=all, idempotent) at a steady pace and two real
consumers ("orders", "billing") on fresh topics with replication factor 3 and
``min.insync.replicas=2``, injects one fault, heals it, and then accounts for every event:

* every acknowledged event is in the topic (a fresh consumer replays it) and was
  applied by every service: lost must be 0;
* a publish that was not acknowledged raised (PublishError / BrokerUnavailableError):
  failing loudly is allowed, failing silently is not;
* the figures (failed loudly, time until every service is in force again) are printed.

Loopback only; the cluster is this module's own (tests/cluster/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from chaos_harness import ChaosFigures, ChaosRun, report

from devstack import KafkaCluster
from schemas import KeySet, SigningKey, TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(600)]

STEADY_S = 2.0  # publishing before the fault
AFTER_S = 3.0  # publishing after the cluster healed
LOUD = ("PublishError", "BrokerUnavailableError", "BulkPublishError")


def _chaos(
    request: pytest.FixtureRequest,
    cluster: KafkaCluster,
    topics: TopicNames,
    signing_key: SigningKey,
    keys: KeySet,
    scenario: str,
    fault: Callable[[], None],
) -> ChaosFigures:
    run = ChaosRun(cluster.bootstrap, topics, signing_key, keys)
    with run.running():
        time.sleep(STEADY_S)
        fault_at = time.monotonic()
        fault()
        fault_s = time.monotonic() - fault_at
        cluster.wait_fully_replicated([topics.events, topics.receipts], timeout=120)
        time.sleep(AFTER_S)
    figures = run.figures(scenario, fault_at, fault_s)
    report(request, f"chaos: {figures.line()}")
    for failure in figures.failures:
        report(request, f"  failed loudly: {failure}")
    request.node.user_properties.append(("chaos", figures.__dict__))

    assert figures.acked > 0, "nothing was acknowledged: the run measured nothing"
    assert figures.lost == 0, f"{figures.lost} acknowledged events are not in the topic"
    assert not figures.not_applied, f"acknowledged events never applied: {figures.not_applied}"
    assert all(f.startswith(LOUD) for f in figures.failures), figures.failures
    assert figures.attempts == figures.acked + figures.failed_loudly
    return figures


def _kill_and_restart(
    cluster: KafkaCluster, victim: int, who_leads: Callable[[], int], took_over: list[int]
) -> Callable[[], None]:
    """SIGKILL ``victim``, wait until ``who_leads()`` names another node, start it again."""

    def fault() -> None:
        node = cluster.node(victim)
        node.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            leader = who_leads()
            if leader not in (victim, -1):
                took_over.append(leader)
                break
            time.sleep(0.2)
        node.start()

    return fault


def test_partition_leader_killed_mid_publish(
    request: pytest.FixtureRequest,
    cluster: KafkaCluster,
    cluster_topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    victim = cluster.partition_leader(cluster_topics.events, 0)
    moved_to: list[int] = []
    fault = _kill_and_restart(
        cluster, victim, lambda: cluster.partition_leader(cluster_topics.events, 0), moved_to
    )
    _chaos(request, cluster, cluster_topics, signing_key, trusted_keys, "leader SIGKILL", fault)
    assert moved_to, f"no other node took over partition 0 from node {victim} within 30 s"


def test_controller_killed(
    request: pytest.FixtureRequest,
    cluster: KafkaCluster,
    cluster_topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    victim = cluster.quorum_leader()
    elected: list[int] = []
    fault = _kill_and_restart(cluster, victim, cluster.quorum_leader, elected)
    _chaos(request, cluster, cluster_topics, signing_key, trusted_keys, "controller SIGKILL", fault)
    assert elected, f"the quorum elected no leader other than node {victim} within 30 s"


def test_rolling_restart_of_all_three(
    request: pytest.FixtureRequest,
    cluster: KafkaCluster,
    cluster_topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    topics = [cluster_topics.events, cluster_topics.receipts]

    def fault() -> None:
        for node in cluster.nodes:
            node.restart()  # SIGTERM: a controlled shutdown, then a start on the same data
            cluster.wait_fully_replicated(topics, timeout=120)

    _chaos(request, cluster, cluster_topics, signing_key, trusted_keys, "rolling restart", fault)
