"""revocast consumers: the in-process revocation view, kept current from Kafka.

``RevocationConsumer`` reads every partition into a ``RevocationState``;
``Verifier`` (and ``RevocationMiddleware`` for ASGI apps) checks tokens against
it. Test helpers live in :mod:`consumers.testing`; the engines in
:mod:`consumers.engines` (the faust one is not imported here: faust is heavy); the process entry
point in :mod:`consumers.service` (``run_service``, ``python -m consumers``; not
imported here, so ``python -m consumers.service`` runs without runpy's warning).
"""

from consumers.consumer import ConsumerStats, RevocationConsumer
from consumers.exceptions import (
    InvalidTokenError,
    KeysUnavailableError,
    MissingTokenError,
    RevokedTokenError,
    SnapshotError,
    StaleClaimsError,
    StaleViewError,
    TokenRejected,
)
from consumers.freshness import FreshnessGuard, FreshnessReport, FreshnessSource, PartitionFreshness
from consumers.metrics import ConsumerMetrics
from consumers.middleware import RevocationMiddleware
from consumers.redis_store import RedisRevocationStore, RedisSessionLookup, RedisSnapshotStore
from consumers.settings import ConsumerSettings
from consumers.state import ALLOW, Decision, RevocationState, Rule, Verdict
from consumers.stores import ConsumerSnapshot, SharedView, SnapshotStore
from consumers.verifier import RemoteKeys, VerifiedToken, Verifier, averify_request, verify_request

__all__ = [
    "ALLOW",
    "ConsumerMetrics",
    "ConsumerSettings",
    "ConsumerSnapshot",
    "ConsumerStats",
    "Decision",
    "FreshnessGuard",
    "FreshnessReport",
    "FreshnessSource",
    "InvalidTokenError",
    "KeysUnavailableError",
    "MissingTokenError",
    "PartitionFreshness",
    "RedisRevocationStore",
    "RedisSessionLookup",
    "RedisSnapshotStore",
    "RemoteKeys",
    "RevocationConsumer",
    "RevocationMiddleware",
    "RevocationState",
    "RevokedTokenError",
    "Rule",
    "SharedView",
    "SnapshotError",
    "SnapshotStore",
    "StaleClaimsError",
    "StaleViewError",
    "TokenRejected",
    "Verdict",
    "VerifiedToken",
    "Verifier",
    "averify_request",
    "verify_request",
]
