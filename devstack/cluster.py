"""A 3-node KRaft Kafka cluster on loopback: the deployment shape revocast is built for.

Each node is one JVM running broker and controller (``process.roles=broker,controller``),
so three JVMs form both the metadata quorum (tolerates one lost controller) and the
data plane: the internal topics, and revocast's topics created by
``revocast dev up --brokers 3``, have replication factor 3 and ``min.insync.replicas=2``.
An acks=all write is acknowledged only once two replicas hold it, so losing any one
node loses no acknowledged event; with two nodes down, writes fail loudly (NotEnoughReplicas)
instead of being acknowledged on one copy.

Combined nodes rather than three controllers plus three brokers: six JVMs on a 2-core
machine start slower and leave less CPU to the services under test; the fault tolerance
for one lost node is the same. Heaps are 448 MiB each.

Failure detection is tuned for a test rig: a broker that stops heartbeating is fenced
after 4 s (Kafka's default 9 s), which is when its partitions get new leaders.

    with KafkaCluster(3) as cluster:
        print(cluster.bootstrap)                     # 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
        leader = cluster.partition_leader("revocast.events", 0)
        cluster.node(leader).kill(); cluster.node(leader).start()
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devstack.broker import KafkaBroker, NodeSecurity, admin_client
from devstack.jars import random_cluster_id
from devstack.process import LOOPBACK, DevstackError, free_ports, one_line

__all__ = ["CLUSTER_JVM_OPTS", "FAILOVER_CONFIG", "KafkaCluster"]

DEFAULT_CLUSTER_START_TIMEOUT = 180.0

CLUSTER_JVM_OPTS = (
    "-Xms128m",
    "-Xmx448m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:CICompilerCount=2",
    "-Djava.awt.headless=true",
)

FAILOVER_CONFIG = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "4000",
    "replica.lag.time.max.ms": "5000",
    "controller.quorum.election.timeout.ms": "1000",
    "controller.quorum.fetch.timeout.ms": "2000",
    # A restarted node takes its leaderships back within seconds, as in production.
    "auto.leader.rebalance.enable": "true",
    "leader.imbalance.check.interval.seconds": "5",
}


class KafkaCluster:
    """``size`` combined KRaft nodes (ids 1..size) sharing one quorum, on loopback."""

    def __init__(
        self,
        size: int = 3,
        *,
        ports: Sequence[int] | None = None,
        start_timeout: float = DEFAULT_CLUSTER_START_TIMEOUT,
        libs: Path | None = None,
        security: NodeSecurity | None = None,
        jvm_opts: tuple[str, ...] = CLUSTER_JVM_OPTS,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= size <= 9:
            raise DevstackError(f"a devstack cluster has 1 to 9 nodes, not {size}")
        if ports is not None and len(ports) != size:
            raise DevstackError(f"{len(ports)} broker ports given for {size} brokers: give {size}")
        self.size = size
        self.start_timeout = start_timeout
        self.security = security
        self.start_seconds: float | None = None
        replication = min(3, size)
        self.nodes = [
            KafkaBroker(
                port=ports[i] if ports else None,
                start_timeout=start_timeout,
                libs=libs,
                jvm_opts=jvm_opts,
                node_id=i + 1,
                replication=replication,
                security=security,
                extra_config={**FAILOVER_CONFIG, **(extra_config or {})},
            )
            for i in range(size)
        ]

    @property
    def replication(self) -> int:
        return self.nodes[0].replication

    @property
    def min_insync_replicas(self) -> int:
        return min(2, self.replication)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated (``KAFKA_BOOTSTRAP_SERVERS``)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def version(self) -> str:
        return self.nodes[0].version

    @property
    def running(self) -> bool:
        """True while every node runs."""
        return all(node.running for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise DevstackError(f"no node {node_id}: nodes are 1..{self.size}")

    def __repr__(self) -> str:
        return f"<KafkaCluster {self.size} nodes {[repr(n) for n in self.nodes]}>"

    # -- lifecycle

    def start(self) -> Self:
        """Format and start every node, then wait until each is an unfenced broker."""
        begin = time.monotonic()
        self._assign_ports()
        voters = ",".join(f"{n.node_id}@{LOOPBACK}:{n.controller_port}" for n in self.nodes)
        cluster_id = self.nodes[0].cluster_id or random_cluster_id()
        for node in self.nodes:
            node.voters = voters
            node.cluster_id = cluster_id
        try:
            # Formatting is a JVM per node: run the three at once.
            with concurrent.futures.ThreadPoolExecutor(self.size) as pool:
                for future in [pool.submit(node.launch) for node in self.nodes]:
                    future.result()
            deadline = begin + self.start_timeout
            for node in self.nodes:
                node.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - begin
        return self

    def stop(self, keep_data: bool = False) -> None:
        """Stop every node at once: one by one, the last would wait for a quorum long gone."""
        with concurrent.futures.ThreadPoolExecutor(self.size) as pool:
            for future in [pool.submit(node.stop, keep_data) for node in self.nodes]:
                future.result()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _assign_ports(self) -> None:
        """Pick every missing port in one go, so two nodes never pick the same one."""
        taken = {p for n in self.nodes for p in (n.port, n.controller_port) if p is not None}
        needed = sum((n.port is None) + (n.controller_port is None) for n in self.nodes)
        fresh = iter(p for p in free_ports(needed + len(taken)) if p not in taken)
        for node in self.nodes:
            if node.port is None:
                node.port = next(fresh)
            if node.controller_port is None:
                node.controller_port = next(fresh)

    # -- observation (for chaos tests and `dev up`)

    @contextmanager
    def admin(self, timeout: float = 10.0) -> Iterator[Any]:
        """A super-user kafka-python admin client on the nodes that run."""
        alive = ",".join(n.bootstrap for n in self.nodes if n.running) or self.bootstrap
        options = self.security.admin_options() if self.security else {}
        client = admin_client(alive, timeout, options)
        try:
            yield client
        finally:
            client.close()

    def _ask(self, what: Callable[[Any], Any], timeout: float) -> Any:
        """Run ``what(admin)``, retrying while a node is down (the admin client may still
        route a request to it until the controller fences it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.admin(min(5.0, max(0.5, deadline - time.monotonic()))) as admin:
                    return what(admin)
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise DevstackError(
                        f"the cluster did not answer within {timeout:g} s: "
                        f"{one_line(f'{type(exc).__name__}: {exc}', 160)}"
                    ) from None
                time.sleep(0.2)

    def partition_leader(self, topic: str, partition: int, timeout: float = 15.0) -> int:
        """The node id leading ``topic``/``partition`` now (-1 while it has none)."""
        described = self._ask(lambda admin: admin.describe_topics([topic]), timeout)
        for info in described:
            for part in info.get("partitions", []):
                if part.get("partition_index") == partition:
                    return int(part.get("leader_id", -1))
        raise DevstackError(f"{topic}/{partition} is not known to the cluster")

    def in_sync_replicas(self, topic: str, timeout: float = 15.0) -> dict[int, list[int]]:
        """``{partition: isr node ids}`` of ``topic``."""
        described = self._ask(lambda admin: admin.describe_topics([topic]), timeout)
        return {
            int(part["partition_index"]): sorted(int(r) for r in part.get("isr_nodes", []))
            for info in described
            for part in info.get("partitions", [])
        }

    def quorum_leader(self, timeout: float = 15.0) -> int:
        """The node id of the active controller (the metadata quorum's leader)."""
        quorum = self._ask(lambda admin: admin.describe_metadata_quorum(), timeout)
        for topic in quorum.get("topics", []):
            for part in topic.get("partitions", []):
                return int(part["leader_id"])
        raise DevstackError("DescribeQuorum named no leader")

    def wait_fully_replicated(self, topics: Sequence[str], timeout: float = 60.0) -> float:
        """Block until every partition of ``topics`` has all nodes in sync; seconds waited."""
        begin = time.monotonic()
        every = list(range(1, self.size + 1))
        last = "not asked yet"
        while True:
            try:
                lagging = {
                    f"{t}/{p}": isr
                    for t in topics
                    for p, isr in self.in_sync_replicas(t, timeout=5.0).items()
                    if isr != every
                }
                if not lagging:
                    return time.monotonic() - begin
                last = f"not fully in sync: {lagging}"
            except Exception as exc:  # the admin client raises several kinds mid-failover
                last = one_line(f"{type(exc).__name__}: {exc}", 160)
            if time.monotonic() - begin > timeout:
                raise DevstackError(f"cluster not fully replicated after {timeout:g} s ({last})")
            time.sleep(0.25)
