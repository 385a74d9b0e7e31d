"""The SCIM 2.0 service provider (RFC 7643/7644) as an ASGI app: IdP deprovisioning in,
revocations out.

scim2-server speaks the protocol (routing, validation of every body with scim2-models,
PATCH and PUT semantics, filters, ``If-Match``, error bodies); this module adds what
revocast needs around it: per-client bearer tokens, a body limit enforced while the body
arrives, the SCIM client and arrival time handed to the store (which publishes before it
commits, see :mod:`~producer.ingress.scim.store`), and a log line for every refusal.

Endpoints, under the mount point (``revocast serve-api`` mounts it at ``/scim/v2``):
``/Users``, ``/Groups`` (GET, POST, ``/{id}`` GET/PUT/PATCH/DELETE, ``/.search``),
``/ServiceProviderConfig``, ``/ResourceTypes``, ``/Schemas``. Bulk, ``/Me`` and password
changes are not offered (``ServiceProviderConfig`` says so; they answer 501).

Guarantees:

* **Authentication first.** Every request but ``/ServiceProviderConfig`` needs
  ``Authorization: Bearer <token>`` of a configured SCIM client; tokens are compared in
  constant time against every client's, before the body is read. Missing or unknown: 401
  with ``WWW-Authenticate: Bearer``. Logs name the client, never the token.
* **Bounded input.** A body larger than ``max_body_bytes`` is refused with 413 as soon as
  the declared length or the bytes received so far pass the limit; nothing past the limit
  is buffered. Filters, paths and values are parsed by scim2-models; anything it refuses
  is a SCIM error (400 with ``scimType``: ``invalidSyntax``, ``invalidFilter``,
  ``invalidPath``, ``invalidValue``, ``noTarget``, ``mutability``, ``uniqueness``, ...).
* **2xx only after Kafka.** A change that revokes (see
  :mod:`~producer.ingress.scim.revocations`) is answered 2xx only after every event was
  acknowledged (acks=all); otherwise 503 with ``Retry-After`` and nothing committed.
* Every error body is ``urn:ietf:params:scim:api:messages:2.0:Error`` with ``status``
  (and ``scimType`` where RFC 7644 defines one), ``Content-Type: application/scim+json``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import redis.asyncio as aioredis
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    InvalidValueException,
    Pagination,
    Patch,
    PayloadTooLargeException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
    User,
)
from scim2_server.applications.asgi import ASGIApplication, Receive, Scope, Send
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

from producer.ingress.scim.revocations import Provenance
from producer.ingress.scim.settings import ScimClient, ScimSettings
from producer.ingress.scim.store import PROVENANCE, RedisScimStorage
from schemas import InfrastructureError, RevocationEvent

if TYPE_CHECKING:  # the publisher (and Kafka) is only needed when a change revokes
    from producer.publisher import RevocationPublisher

__all__ = ["ScimApplication", "build_provider", "create_scim_app", "publisher_sink"]

log = logging.getLogger("producer.ingress.scim")

AsgiReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
AsgiSend = Callable[[MutableMapping[str, Any]], Awaitable[None]]

REALM = "revocast-scim"


def build_provider(settings: ScimSettings) -> ScimProvider:
    """Users (with the enterprise extension) and Groups, and what the service offers.

    The policy accepts two deviations Microsoft Entra ID sends and that cannot be read two
    ways: a PATCH ``remove`` of ``members`` carrying the members to remove as its ``value``,
    and an ``add`` to a filtered path that matches nothing yet (it creates the entry).
    """
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=settings.max_page_size),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="OAuth Bearer Token",
                description="A static bearer token per SCIM client (REVOCAST_SCIM_CLIENTS).",
                primary=True,
            )
        ],
        pagination=Pagination(
            cursor=False,
            index=True,
            default_pagination_method=Pagination.DefaultPaginationMethod.index,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
        ),
    )
    policy = ScimPolicy(
        remove_value_as_filter=ScimPolicy.RemoveValue.apply,
        unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    )
    return ScimProvider(
        models=[User, EnterpriseUser, Group],
        resource_types=[
            ResourceType.from_resource(User[EnterpriseUser]),
            ResourceType.from_resource(Group),
        ],
        config=config,
        policy=policy,
    )


def publisher_sink(
    get_publisher: Callable[[], RevocationPublisher],
) -> Callable[[Sequence[RevocationEvent]], Any]:
    """A :data:`~producer.ingress.scim.store.Publish` over a (lazily created) publisher.

    ``publish``/``publish_many`` block until Kafka acknowledged (acks=all) or raise an
    :class:`~schemas.InfrastructureError`; they run in a worker thread.
    """

    def send(events: Sequence[RevocationEvent]) -> None:
        publisher = get_publisher()
        if len(events) == 1:
            publisher.publish(events[0])
        else:
            publisher.publish_many(events)

    async def publish(events: Sequence[RevocationEvent]) -> None:
        try:
            await asyncio.to_thread(send, events)
        except ValidationError as exc:  # the envelope refused an event: say which field
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidValueException(
                detail=f"the revocation cannot be published: {where}: {err['msg']}"
            ) from None

    return publish


def _escape(text: str, limit: int = 200) -> str:
    """``text`` safe for one log line: control characters escaped, cut at ``limit``."""
    shown = repr(text[:limit])[1:-1]
    return shown + ("…" if len(text) > limit else "")


class _Service(ScimService):
    """scim2-server's protocol service; a PATCH answers 200 with the resource.

    RFC 7644 §3.5.2 allows 200 with the resource or 204; Okta's SCIM 2.0 guide expects the
    updated user in the answer, Entra ID accepts both, so every PATCH gets 200.
    """

    def patch_response(
        self,
        base_url: str,
        resource: Resource[Any],
        response_parameters: ResponseParameters[Any],
    ) -> ScimResponse:
        return self.resource_response(
            self.publish(base_url, resource),
            Context.RESOURCE_REPLACEMENT_RESPONSE,
            response_parameters,
        )


class ScimApplication(ASGIApplication):
    """scim2-server's ASGI application with revocast's authentication, limits and logs."""

    def __init__(
        self,
        storage: RedisScimStorage,
        provider: ScimProvider,
        clients: Sequence[ScimClient],
        *,
        max_body_bytes: int,
        credential_lifetime: timedelta,
        redis: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(storage, provider, _Service(provider))
        self.log = log
        self.clients = list(clients)
        self._secrets = [(c.token.get_secret_value().encode(), c) for c in self.clients]
        self.max_body_bytes = max_body_bytes
        self.credential_lifetime = credential_lifetime
        self._redis = redis

    # -- serving

    @staticmethod
    def get_base_url(scope: Scope) -> str:
        """The SCIM root as the client sees it: the mount point itself (``…/scim/v2``)."""
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host and scope.get("server"):
            host = "{}:{}".format(*scope["server"])
        return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"

    async def __call__(  # type: ignore[override]
        self, asgi_scope: MutableMapping[str, Any], asgi_receive: AsgiReceive, asgi_send: AsgiSend
    ) -> None:
        """Serve one ASGI request: authenticate from the headers, then read the body."""
        scope = cast(Scope, asgi_scope)
        receive = cast(Receive, asgi_receive)
        send = cast(Send, asgi_send)
        if scope["type"] == "lifespan":
            await self.serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = ScimRequest(
            method=scope["method"],
            base_url=self.get_base_url(scope),
            path=self.split_path(self.get_path(scope)),
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        )
        try:
            if self.needs_auth(request):
                request.subject = self._authenticate(request)
            request.body = await self._read_body(request, receive)
        except SCIMException as exc:
            response = self.handle_exception(request, exc)
            await self.send_response(self.finalize_response(request, response), send)
            return
        await self.send_response(await self.serve(request), send)

    async def _read_body(self, request: ScimRequest, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        declared = (request.header("Content-Length") or "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeException(
                detail=f"the body is {int(declared)} bytes; at most {limit} are accepted"
            )
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeException(
                    detail=f"the body is larger than {limit} bytes, the most accepted"
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _authenticate(self, request: ScimRequest) -> ScimClient:
        scheme, _, credentials = (request.header("Authorization") or "").partition(" ")
        given = credentials.strip().encode("latin-1", errors="replace")
        if scheme.lower() != "bearer" or not given:
            raise UnauthorizedException(
                detail="a bearer token is required (Authorization: Bearer <token>)"
            )
        found: ScimClient | None = None
        for secret, client in self._secrets:  # compare with every token: constant time each
            if hmac.compare_digest(secret, given):
                found = client
        if found is None:
            raise UnauthorizedException(detail="the bearer token is not a SCIM client's token")
        return found

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        client = request.subject
        token = None
        if isinstance(client, ScimClient):
            token = PROVENANCE.set(
                Provenance(
                    client=client,
                    received_at=datetime.now(UTC),
                    lifetime=self.credential_lifetime,
                )
            )
        try:
            response = await self.handler.handle(request)
        finally:
            if token is not None:
                PROVENANCE.reset(token)
        if request.method.upper() != "GET":
            log.info(
                "scim %s: %s %s -> %d",
                client.name if isinstance(client, ScimClient) else "-",
                request.method.upper(),
                _escape(request.path),
                int(response.status),
            )
        return response

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        """Every refusal is logged with its reason; ids escaped, no headers, no token."""
        response = self.service.error_response(exception)
        client = request.subject.name if isinstance(request.subject, ScimClient) else "-"
        if isinstance(exception, SCIMException | InfrastructureError):
            error = response.body or {}
            log.warning(
                "scim %s: refused %s %s: %s%s: %s",
                client,
                request.method.upper(),
                _escape(request.path),
                int(response.status),
                f" {error['scimType']}" if error.get("scimType") else "",
                _escape(str(error.get("detail", exception))),
            )
        else:
            log.exception(
                "scim %s: %s %s failed", client, request.method.upper(), _escape(request.path)
            )
        return response

    def finalize_response(self, request: ScimRequest, response: ScimResponse) -> ScimResponse:
        response = super().finalize_response(request, response)
        if int(response.status) == 503:
            response.headers["Retry-After"] = "5"
        if int(response.status) == 401:
            response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
        return response

    async def aclose(self) -> None:
        """Close the Redis connections this app opened (the mount's owner calls it)."""
        if self._redis is not None:
            await self._redis.aclose()


def create_scim_app(
    settings: ScimSettings,
    *,
    publisher: Callable[[], RevocationPublisher],
    credential_lifetime: timedelta,
    redis: aioredis.Redis | None = None,
) -> ScimApplication:
    """The SCIM app: clients and limits from ``settings``, Redis at ``settings.redis_url``
    (or ``redis``, then not closed by :meth:`ScimApplication.aclose`), revocations through
    ``publisher()`` (called on first need; may raise an InfrastructureError -> 503).

    ``credential_lifetime`` is the longest lifetime of the tokens these subjects hold: the
    events' ``expires_at`` (the producer's ``max_credential_lifetime``).
    """
    clients = settings.all_clients()
    provider = build_provider(settings)
    own = redis is None
    client = redis or aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    storage = RedisScimStorage(
        client,
        prefix=settings.key_prefix,
        model_for=lambda name: cast(type[Resource[Any]], provider.model_for(name)),
        publish=publisher_sink(publisher),
        max_scan=settings.max_scan,
        max_members=settings.max_members,
    )
    return ScimApplication(
        storage,
        provider,
        clients,
        max_body_bytes=settings.max_body_bytes,
        credential_lifetime=credential_lifetime,
        redis=client if own else None,
    )
