"""The producer's branches of revocast's one exception tree (rooted in :mod:`schemas.exceptions`).

Only two errors are the producer's own; both hang under the shared root so callers
catch ``RevocastError`` (or ``InfrastructureError``) and nothing else::

    RevocastError
    ├── NotInForceError              some services (or instances) have not applied it in time
    └── InfrastructureError
        └── PublishError
            └── BulkPublishError     publish_many: which events were not acknowledged

``NotInForceError`` is ``retriable``: waiting longer can help, republishing cannot
hurt (applying an event twice gives the same state).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from schemas.exceptions import PublishError, RevocastError

if TYPE_CHECKING:
    from producer.inforce import EventStatus
    from producer.publisher import FailedEvent, Published

__all__ = ["BulkPublishError", "NotInForceError"]


class BulkPublishError(PublishError):
    """Some events of a ``publish_many`` batch were not acknowledged by the broker.

    ``published`` lists the acknowledged ones (in input order), ``failed`` the others,
    each with its index in the input, its event id and why. Only ``failed`` events may
    be missing from the topic; republishing them (or the whole batch) is safe.
    """

    def __init__(
        self, message: str, *, published: Sequence[Published], failed: Sequence[FailedEvent]
    ) -> None:
        super().__init__(message)
        self.published: tuple[Published, ...] = tuple(published)
        self.failed: tuple[FailedEvent, ...] = tuple(failed)


class NotInForceError(RevocastError):
    """A revocation was not applied by every named service within the timeout.

    ``missing`` names the services not there yet (no instance applied it, fewer
    than asked for, or a known instance has not); ``silent`` the instances
    (``service/instance``) that stopped sending watermarks without having applied it,
    ``pending`` the live ones still behind; ``status`` is what had been applied when
    the wait ended. A silent instance is always named here, never skipped.
    """

    retriable = True

    def __init__(
        self,
        message: str,
        *,
        event_id: uuid.UUID,
        missing: Sequence[str],
        status: EventStatus,
        silent: Sequence[str] = (),
        pending: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.missing: tuple[str, ...] = tuple(missing)
        self.status = status
        self.silent: tuple[str, ...] = tuple(silent)
        self.pending: tuple[str, ...] = tuple(pending)
