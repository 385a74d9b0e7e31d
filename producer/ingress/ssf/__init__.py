"""OpenID Shared Signals (SSF 1.0) receiver: CAEP and RISC SETs in, revocations out.

Push (RFC 8935) at ``POST /ssf/v1/push/<transmitter>``, poll (RFC 8936) with
:class:`PollClient`, stream management (SSF 1.0 §8) with :class:`StreamClient`. Every SET is
validated (:mod:`.validation`), mapped (:mod:`.mapping`), published, and only then
acknowledged to the transmitter. See the README section "Connecting an IdP by Shared
Signals".
"""

from producer.ingress.ssf.exceptions import ERR_CODES, SetRejected, TransmitterUnavailableError
from producer.ingress.ssf.keys import ALGORITHMS, TransmitterKeys
from producer.ingress.ssf.mapping import Plan, plan
from producer.ingress.ssf.poll import PollClient, PollResult
from producer.ingress.ssf.push import MEDIA_TYPE, PushServer, SsfIngress, push_routes
from producer.ingress.ssf.receiver import EventPublisher, Outcome, SetReceiver
from producer.ingress.ssf.settings import SsfSettings, TransmitterConfig
from producer.ingress.ssf.store import SsfStore
from producer.ingress.ssf.streams import StreamClient, StreamConfiguration, StreamStatus
from producer.ingress.ssf.validation import SetValidator, ValidatedSet
from producer.ingress.ssf.vocabulary import EVENT_TYPES, SUBJECT_FORMATS, Action

__all__ = [
    "ALGORITHMS",
    "ERR_CODES",
    "EVENT_TYPES",
    "MEDIA_TYPE",
    "SUBJECT_FORMATS",
    "Action",
    "EventPublisher",
    "Outcome",
    "Plan",
    "PollClient",
    "PollResult",
    "PushServer",
    "SetReceiver",
    "SetRejected",
    "SetValidator",
    "SsfIngress",
    "SsfSettings",
    "SsfStore",
    "StreamClient",
    "StreamConfiguration",
    "StreamStatus",
    "TransmitterConfig",
    "TransmitterKeys",
    "TransmitterUnavailableError",
    "ValidatedSet",
    "plan",
    "push_routes",
]
