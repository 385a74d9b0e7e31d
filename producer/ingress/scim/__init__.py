"""SCIM 2.0 service provider: IdP deprovisioning (deactivate, delete, leave a group) in,
revocations out, acknowledged by Kafka before the IdP hears 2xx.

``create_scim_app`` builds the ASGI app (``revocast serve-api`` mounts it at ``/scim/v2``
when ``REVOCAST_SCIM_CLIENTS`` names a client); ``ScimSettings`` and ``ScimClient`` configure
it; ``RedisScimStorage`` is its store; ``revocations`` says what each change publishes.
"""

from producer.ingress.scim.app import ScimApplication, build_provider, create_scim_app
from producer.ingress.scim.revocations import (
    Provenance,
    claims_changed,
    events_for_user_change,
    require_subject,
    subject_of,
)
from producer.ingress.scim.settings import ScimClient, ScimSettings, SubjectAttribute
from producer.ingress.scim.store import (
    PROVENANCE,
    RedisScimStorage,
    ServiceUnavailableException,
)

__all__ = [
    "PROVENANCE",
    "Provenance",
    "RedisScimStorage",
    "ScimApplication",
    "ScimClient",
    "ScimSettings",
    "ServiceUnavailableException",
    "SubjectAttribute",
    "build_provider",
    "claims_changed",
    "create_scim_app",
    "events_for_user_change",
    "require_subject",
    "subject_of",
]
