"""revocast's producer: publish signed revocations, heartbeat, and track where they are in force.

The tracker reads the services' watermarks, knows the fleet (:class:`FleetStatus`) and
says when a revocation is in force at every live instance
(:meth:`ReceiptTracker.wait_in_force`).

The HTTP API lives in :mod:`producer.api` (imported on demand: it pulls in Starlette).
"""

from producer.exceptions import BulkPublishError, NotInForceError
from producer.fleet import FleetStatus, InstanceStatus
from producer.heartbeat import HeartbeatEmitter
from producer.inforce import InstanceApplied, InstanceWaiting
from producer.publisher import FailedEvent, Published, Revocation, RevocationPublisher
from producer.settings import ApiToken, ProducerSettings
from producer.topics import TopicsReport, TopicState, ensure_topics
from producer.tracker import EventStatus, InForce, ReceiptTracker, ServiceApplied

__all__ = [
    "ApiToken",
    "BulkPublishError",
    "EventStatus",
    "FailedEvent",
    "FleetStatus",
    "HeartbeatEmitter",
    "InForce",
    "InstanceApplied",
    "InstanceStatus",
    "InstanceWaiting",
    "NotInForceError",
    "ProducerSettings",
    "Published",
    "ReceiptTracker",
    "Revocation",
    "RevocationPublisher",
    "ServiceApplied",
    "TopicState",
    "TopicsReport",
    "ensure_topics",
]
