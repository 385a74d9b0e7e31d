"""Stream management client (SSF 1.0 §8): create, read, update, replace, delete a stream at the
transmitter, read and set its status, and request a verification event.

Endpoints come from the transmitter's configuration metadata (``configuration_endpoint``,
``status_endpoint``, ``verification_endpoint``), fetched with its ``issuer`` checked.
Requests carry ``Authorization: Bearer <management_token>``.

Guarantees:

* Every answer describing a stream is checked: its ``iss`` must be the configured issuer
  (SSF 1.0 §8.1.1.1 "MUST check"), and its ``aud`` must include one of the configured
  audiences; a stream that fails either is refused, never used.
* Requests are bounded like every request to a transmitter (timeout, size, https except
  loopback, no redirects): :func:`producer.ingress.ssf.keys.request_json`.
* A push stream is created with this receiver's ``push_endpoint_url`` and
  ``authorization_header: Bearer <push_token>``, so the transmitter authenticates itself on
  every push; a poll stream gets its ``endpoint_url`` from the transmitter.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producer.ingress.ssf.exceptions import TransmitterUnavailableError
from producer.ingress.ssf.keys import fetch_configuration, request_json
from producer.ingress.ssf.settings import DEFAULT_APPLIED, SsfSettings, TransmitterConfig
from producer.ingress.ssf.vocabulary import CAEP, STREAM_UPDATED, VERIFICATION

__all__ = ["POLL", "PUSH", "StreamClient", "StreamConfiguration", "StreamStatus"]

PUSH: Final = "urn:ietf:rfc:8935"
POLL: Final = "urn:ietf:rfc:8936"


class StreamConfiguration(BaseModel):
    """A stream as the transmitter describes it (unknown members kept, as SSF asks)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    stream_id: str = Field(min_length=1, max_length=256)
    iss: str = Field(max_length=2048)
    aud: str | list[str]
    delivery: dict[str, Any] = Field(default_factory=dict)
    events_supported: list[str] = Field(default_factory=list, max_length=256)
    events_requested: list[str] = Field(default_factory=list, max_length=256)
    events_delivered: list[str] = Field(default_factory=list, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    min_verification_interval: int | None = None
    inactivity_timeout: int | None = None

    @property
    def endpoint_url(self) -> str | None:
        url = self.delivery.get("endpoint_url")
        return url if isinstance(url, str) else None


class StreamStatus(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    stream_id: str = Field(min_length=1, max_length=256)
    status: Literal["enabled", "paused", "disabled"]
    reason: str | None = Field(default=None, max_length=1024)


class StreamClient:
    """Manage this receiver's stream at one transmitter."""

    def __init__(
        self,
        config: TransmitterConfig,
        settings: SsfSettings,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=settings.http_timeout)
        self._metadata: dict[str, Any] | None = None

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = fetch_configuration(
                self.config, self.http, max_bytes=self.settings.max_document_bytes
            )
        return self._metadata

    def _endpoint(self, member: str) -> str:
        url = self.metadata().get(member)
        if not isinstance(url, str):
            raise TransmitterUnavailableError(
                f"transmitter {self.config.name} publishes no {member}"
            )
        return url

    def _call(
        self,
        method: str,
        member: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        url = self._endpoint(member)
        if query:
            url = str(httpx.URL(url).copy_merge_params(query))
        token = self.config.management_token
        return request_json(
            self.http,
            method,
            url,
            what=f"transmitter {self.config.name} {member} {method}",
            max_bytes=self.settings.max_document_bytes,
            token=token.get_secret_value() if token is not None else None,
            body=body,
            expect=expect,
        )

    def _stream(self, doc: Any) -> StreamConfiguration:
        try:
            stream = StreamConfiguration.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise TransmitterUnavailableError(
                f"transmitter {self.config.name} sent an invalid stream: "
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            ) from None
        if stream.iss != self.config.issuer:
            raise TransmitterUnavailableError(
                f"stream {stream.stream_id[:64]!r} names iss {stream.iss[:200]!r}, not "
                f"{self.config.issuer!r}: refused"
            )
        auds = [stream.aud] if isinstance(stream.aud, str) else stream.aud
        if not set(auds) & set(self.config.audience):
            raise TransmitterUnavailableError(
                f"stream {stream.stream_id[:64]!r} has aud {auds[:4]!r}, none of this "
                "receiver's audiences: refused (if that aud names this receiver, add it to the "
                "transmitter's audience and run `revocast ssf stream get`)"
            )
        return stream

    def _delivery(self) -> dict[str, Any]:
        if self.config.delivery == "poll":
            return {"method": POLL}
        if self.config.push_endpoint_url is None or self.config.push_token is None:
            raise TransmitterUnavailableError(
                f"transmitter {self.config.name}: a push stream needs push_endpoint_url "
                "(this receiver's public URL /ssf/v1/push/<name>) and push_token"
            )
        return {
            "method": PUSH,
            "endpoint_url": self.config.push_endpoint_url,
            "authorization_header": f"Bearer {self.config.push_token.get_secret_value()}",
        }

    def default_events(self) -> list[str]:
        """What to request: the applied types, the optional ones configured, control events."""
        wanted = set(self.config.apply_events) | {CAEP + t for t in self.config.apply_optional}
        return sorted(wanted | {VERIFICATION, STREAM_UPDATED})

    # -- the API (SSF 1.0 §8.1)

    def create(
        self, *, events_requested: list[str] | None = None, description: str | None = None
    ) -> StreamConfiguration:
        body: dict[str, Any] = {
            "delivery": self._delivery(),
            "events_requested": events_requested or self.default_events(),
        }
        if description is not None:
            body["description"] = description
        _, doc = self._call("POST", "configuration_endpoint", body=body, expect=(200, 201))
        return self._stream(doc)

    def get(self, stream_id: str | None = None) -> StreamConfiguration:
        sid = stream_id or self.config.stream_id
        _, doc = self._call(
            "GET", "configuration_endpoint", query={"stream_id": sid} if sid else None
        )
        if isinstance(doc, list):
            if len(doc) != 1:
                raise TransmitterUnavailableError(
                    f"transmitter {self.config.name} has {len(doc)} streams for this receiver: "
                    "name one (stream_id)"
                )
            doc = doc[0]
        return self._stream(doc)

    def update(self, stream_id: str | None = None, **changes: Any) -> StreamConfiguration:
        """PATCH: only the Receiver-Supplied properties given change."""
        body = {"stream_id": self._sid(stream_id), **changes}
        _, doc = self._call("PATCH", "configuration_endpoint", body=body, expect=(200, 202))
        return self._stream(doc) if doc is not None else self.get(body["stream_id"])

    def replace(
        self,
        stream_id: str | None = None,
        *,
        events_requested: list[str] | None = None,
        description: str | None = None,
    ) -> StreamConfiguration:
        """PUT: the whole Receiver-Supplied configuration (missing ones are deleted)."""
        body: dict[str, Any] = {
            "stream_id": self._sid(stream_id),
            "delivery": self._delivery(),
            "events_requested": events_requested or self.default_events(),
        }
        if description is not None:
            body["description"] = description
        _, doc = self._call("PUT", "configuration_endpoint", body=body, expect=(200, 202))
        return self._stream(doc) if doc is not None else self.get(body["stream_id"])

    def delete(self, stream_id: str | None = None) -> None:
        self._call(
            "DELETE",
            "configuration_endpoint",
            query={"stream_id": self._sid(stream_id)},
            expect=(200, 204),
        )

    def status(self, stream_id: str | None = None) -> StreamStatus:
        _, doc = self._call("GET", "status_endpoint", query={"stream_id": self._sid(stream_id)})
        return self._status(doc)

    def set_status(
        self, status: str, *, reason: str | None = None, stream_id: str | None = None
    ) -> StreamStatus | None:
        body: dict[str, Any] = {"stream_id": self._sid(stream_id), "status": status}
        if reason:
            body["reason"] = reason
        code, doc = self._call("POST", "status_endpoint", body=body, expect=(200, 202))
        return self._status(doc) if code == 200 and doc is not None else None

    def verify(self, state: str | None, stream_id: str | None = None) -> None:
        """Ask for a verification event (204); the receiver checks ``state`` when it comes."""
        body: dict[str, Any] = {"stream_id": self._sid(stream_id)}
        if state is not None:
            body["state"] = state
        self._call("POST", "verification_endpoint", body=body, expect=(200, 204))

    def _sid(self, stream_id: str | None) -> str:
        sid = stream_id or self.config.stream_id
        if not sid:
            raise TransmitterUnavailableError(
                f"transmitter {self.config.name}: no stream_id (set it in the transmitter's "
                "configuration after `revocast ssf stream create`)"
            )
        return sid

    def _status(self, doc: Any) -> StreamStatus:
        try:
            return StreamStatus.model_validate(doc)
        except ValidationError as exc:
            raise TransmitterUnavailableError(
                f"transmitter {self.config.name} sent an invalid stream status: "
                f"{exc.errors()[0]['msg']}"
            ) from None


# Everything applied by default is requested by default; kept importable for the README.
DEFAULT_EVENTS_REQUESTED: Final = sorted(DEFAULT_APPLIED | {VERIFICATION, STREAM_UPDATED})
