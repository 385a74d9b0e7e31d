"""Redis as the SCIM store: users, groups, memberships and versions, written only after the
revocations a write implies were acknowledged by Kafka.

:class:`RedisScimStorage` is a :class:`scim2_server.storage.AsyncScimStorage`: scim2-server
parses and validates the request, applies the PATCH or PUT to the stored resource and checks
``If-Match``; this class reads, writes, searches, and decides (with
:mod:`~producer.ingress.scim.revocations`) what a write means for tokens.

Guarantees:

* **Published before committed.** An update or delete reads the stored resource under
  ``WATCH``, computes the revocations (deactivation, deletion, members leaving a group),
  hands them to the publisher and waits for Kafka's acknowledgement (acks=all), and only
  then commits in one ``MULTI``/``EXEC``. When Kafka (or Redis) does not answer the request
  fails with 503 and nothing is committed: the IdP's retry sees the same "before" state and
  publishes again. A retry after a commit whose answer was lost publishes nothing new (the
  user is already inactive), and the revocation is on the topic from the first attempt.
  Publishing twice is harmless: revocations are idempotent facts.
* **Versions.** Every write takes a fresh ``meta.version`` (``W/"n"``) from one Redis
  counter; a write whose resource changed since it was read (another writer, or a stale
  ``If-Match``) fails with 412 and commits nothing.
* **One namespace per SCIM client.** A client reads and changes only the users and groups
  it created (keys ``<prefix>:<client name>:…``); its ``subject_attribute`` names their
  subjects. Two IdP connections cannot see or deprovision each other's users.
* **Memberships are consistent.** Group members must exist (400 otherwise); the
  member -> groups index, the users' ``groups`` attribute and the groups a deleted user or
  group belonged to are updated in the same transaction as the write.
* **Bounded.** A search that no index narrows reads at most ``max_scan`` resources (400
  ``tooMany`` beyond), a group holds at most ``max_members`` members. Passwords are never
  stored. Indexed: ``userName``, ``externalId`` (users and groups), ``displayName``
  (groups) with ``eq``, and ``members[value eq "…"]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError
from scim2_models import (
    Group,
    GroupMember,
    GroupMembership,
    InvalidValueException,
    Meta,
    NotFoundException,
    Path,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    TooManyException,
    Uniqueness,
    UniquenessException,
    User,
)
from scim2_models.path import (
    CompareOperator,
    Comparison,
    LogicalExpr,
    LogicalOperator,
    ValuePath,
)
from scim2_server.storage import AsyncScimStorage, SearchPage
from scim2_server.utils import parametrize

from producer.ingress.scim.revocations import (
    Provenance,
    claims_changed,
    events_for_user_change,
    require_subject,
)
from schemas import InfrastructureError, RevocationEvent

__all__ = [
    "PROVENANCE",
    "Publish",
    "RedisScimStorage",
    "ServiceUnavailableException",
]

log = logging.getLogger("producer.ingress.scim")

PROVENANCE: ContextVar[Provenance | None] = ContextVar("revocast_scim_provenance", default=None)
"""Who sent the request being served; the application sets it before calling the storage."""

Publish = Callable[[Sequence[RevocationEvent]], Awaitable[None]]
"""Publishes events and returns once Kafka acknowledged all of them, or raises
:class:`~schemas.InfrastructureError`."""

_INDEXED: dict[str, tuple[str, ...]] = {
    "User": ("userName", "externalId"),
    "Group": ("displayName", "externalId"),
}
_CHUNK = 500


class ServiceUnavailableException(SCIMException):
    """503: Kafka or Redis did not answer; nothing was committed, the client should retry."""

    status = 503
    _default_detail = "The service is unavailable; nothing was changed, retry later"


def _unavailable(what: str, exc: Exception) -> ServiceUnavailableException:
    return ServiceUnavailableException(
        detail=f"{what} unavailable: {' '.join(str(exc).split())}; nothing was changed, retry"
    )


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def resource(self, type_name: str, resource_id: str) -> str:
        return f"{self.prefix}:r:{type_name}:{resource_id}"

    def all(self, type_name: str) -> str:
        return f"{self.prefix}:all:{type_name}"

    def eq(self, type_name: str, attribute: str, value: str) -> str:
        return f"{self.prefix}:eq:{type_name}:{attribute}:{value}"

    def unique(self, urn: str, value: Any) -> str:
        return f"{self.prefix}:u:{urn}:{json.dumps(value)}"

    def member_of(self, member_id: str) -> str:
        return f"{self.prefix}:memberof:{member_id}"

    @property
    def group_names(self) -> str:
        return f"{self.prefix}:groupnames"

    @property
    def version(self) -> str:
        return f"{self.prefix}:version"


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisScimStorage(AsyncScimStorage):
    """SCIM Users and Groups in Redis, publishing revocations before committing.

    ``model_for`` gives the model of a resource type name (the provider's); ``publish``
    sends revocations and waits for Kafka (see :data:`Publish`).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        model_for: Callable[[str], type[Resource[Any]]],
        publish: Publish,
        max_scan: int = 100_000,
        max_members: int = 50_000,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self._model_for = model_for
        self._publish = publish
        self.max_scan = max_scan
        self.max_members = max_members

    # ------------------------------------------------------------------ helpers

    def _load(self, type_name: str, raw: Any) -> Resource[Any]:
        return self._model_for(type_name).model_validate_json(raw, scim_ctx=None)

    @staticmethod
    def _dump(resource: Resource[Any]) -> str:
        return resource.model_dump_json(scim_ctx=None, exclude_none=True)

    @property
    def keys(self) -> _Keys:
        """The keys of the requesting SCIM client: each client has a namespace of its own."""
        return _Keys(f"{self.prefix}:{self._provenance().client.name}")

    def _provenance(self) -> Provenance:
        provenance = PROVENANCE.get()
        if provenance is None:  # every read and write belongs to one SCIM client
            raise RuntimeError("no SCIM client is set for this request (PROVENANCE)")
        return provenance

    def _indexed_values(self, resource: Resource[Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        type_name = _type_name(resource)
        for attribute in _INDEXED.get(type_name, ()):
            path = parametrize(Path, type(resource))(attribute)
            binding = path.resolve()
            value = path.get(resource, strict=False)
            if value is None or binding is None:
                continue
            try:
                out.append((attribute, str(binding.comparable(value))))
            except ValueError:
                continue
        return out

    @staticmethod
    def _unique_values(resource: Resource[Any]) -> dict[str, Any]:
        paths = parametrize(Path, type(resource)).iter_paths(
            include_subattributes=False, uniqueness=[Uniqueness.server, Uniqueness.global_]
        )
        values: dict[str, Any] = {}
        for path in paths:
            binding = path.resolve()
            if binding is None or binding.urn.endswith(":id"):
                continue
            value = parametrize(Path, type(resource))(binding.urn).get(resource, strict=False)
            try:
                comparable = binding.comparable(value)
            except ValueError:
                continue
            if comparable is not None:
                values[binding.urn] = comparable
        return values

    async def _next_version(self) -> str:
        return f'W/"{await self.redis.incr(self.keys.version)}"'

    async def _fill_groups(self, users: Sequence[Resource[Any]]) -> None:
        """Set each user's read-only ``groups`` from the membership index."""
        if not users:
            return
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.smembers(self.keys.member_of(cast(str, user.id)))
        memberships = await pipe.execute()
        group_ids = sorted({_decode(g) for groups in memberships for g in groups})
        names: dict[str, str] = {}
        if group_ids:
            raw = await self.redis.hmget(self.keys.group_names, group_ids)
            names = {g: _decode(n) for g, n in zip(group_ids, raw, strict=True) if n is not None}
        for user, groups in zip(users, memberships, strict=True):
            ids = sorted(_decode(g) for g in groups)
            user.groups = [  # type: ignore[attr-defined]
                GroupMembership(
                    value=g, ref=cast(Any, f"Groups/{g}"), display=names.get(g), type="direct"
                )
                for g in ids
            ] or None

    async def _get_many(self, type_name: str, ids: Sequence[str]) -> list[Resource[Any]]:
        out: list[Resource[Any]] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            raws = await self.redis.mget([self.keys.resource(type_name, i) for i in chunk])
            out.extend(self._load(type_name, raw) for raw in raws if raw is not None)
        return out

    # ------------------------------------------------------------------ reads

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        type_name = cast(str, resource_type.name)
        try:
            raw = await self.redis.get(self.keys.resource(type_name, resource_id))
            if raw is None:
                raise NotFoundException(detail=f"{type_name} {resource_id!r} not found")
            resource = self._load(type_name, raw)
            if type_name == "User":
                await self._fill_groups([resource])
        except RedisError as exc:
            raise _unavailable("Redis", exc) from None
        return resource

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        found: list[Resource[Any]] = []
        try:
            for resource_type in resource_types:
                type_name = cast(str, resource_type.name)
                ids = await self._candidates(type_name, search_request)
                resources = await self._get_many(type_name, ids)
                if type_name == "User":
                    await self._fill_groups(resources)
                scim_filter = search_request.filter
                found.extend(r for r in resources if scim_filter is None or scim_filter.match(r))
        except RedisError as exc:
            raise _unavailable("Redis", exc) from None

        def key(resource: Resource[Any]) -> tuple[bool, Any, str]:
            value = search_request.sort_value(resource) if search_request.sort_by else None
            return value is None, value if value is not None else "", cast(str, resource.id)

        descending = (
            search_request.sort_by is not None
            and search_request.sort_order == SearchRequest.SortOrder.descending
        )
        found.sort(key=key, reverse=descending)
        start = search_request.start_index_0 or 0
        stop = None if search_request.count is None else start + search_request.count
        return SearchPage(len(found), found[start:stop])

    async def _candidates(self, type_name: str, search_request: SearchRequest[Any]) -> list[str]:
        """Ids a search must look at: an index lookup when the filter allows, else all."""
        scim_filter = search_request.filter
        if scim_filter is not None:
            model = self._model_for(type_name)
            narrowed = self._index_lookup(type_name, model, scim_filter.ast)
            if narrowed is not None:
                return sorted(_decode(i) for i in await self.redis.smembers(narrowed))
        total = await self.redis.scard(self.keys.all(type_name))
        if total > self.max_scan:
            raise TooManyException(
                detail=f"the filter would read {total} {type_name} resources, more than "
                f"{self.max_scan}: filter by userName, externalId or displayName eq"
            )
        return sorted(_decode(i) for i in await self.redis.smembers(self.keys.all(type_name)))

    def _index_lookup(self, type_name: str, model: type[Resource[Any]], node: Any) -> str | None:
        """The Redis set holding a superset of the matches of ``node``, if an index has one."""
        if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
            for term in node.terms:
                found = self._index_lookup(type_name, model, term)
                if found is not None:
                    return found
            return None
        if (
            isinstance(node, ValuePath)
            and type_name == "Group"
            and node.attr_path.attr.casefold() == "members"
            and isinstance(node.val_filter, Comparison)
            and node.val_filter.op == CompareOperator.eq
            and node.val_filter.attr_path.attr.casefold() == "value"
            and isinstance(node.val_filter.value, str)
        ):
            return self.keys.member_of(node.val_filter.value)
        if not (
            isinstance(node, Comparison)
            and node.op == CompareOperator.eq
            and isinstance(node.value, str)
            and node.attr_path.sub_attr is None
        ):
            return None
        for attribute in _INDEXED.get(type_name, ()):
            if attribute.casefold() != node.attr_path.attr.casefold():
                continue
            if (
                node.attr_path.uri
                and node.attr_path.uri.casefold() != str(model.__schema__).casefold()
            ):
                return None
            binding = parametrize(Path, model)(attribute).resolve()
            if binding is None:
                return None
            try:
                return self.keys.eq(type_name, attribute, str(binding.comparable(node.value)))
            except ValueError:
                return self.keys.eq(type_name, attribute, "\x00unmatchable")
        return None

    # ------------------------------------------------------------------ writes

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        type_name = cast(str, resource_type.name)
        provenance = self._provenance()
        resource = self._prepare(resource)
        resource.id = uuid.uuid4().hex
        if type_name == "User":  # after the id is set: it may be the subject attribute
            require_subject(resource, provenance.client)
        try:
            now = datetime.now(UTC)
            resource.meta = Meta(
                resource_type=type_name,
                created=now,
                last_modified=now,
                version=await self._next_version(),
            )
            async with self.redis.pipeline(transaction=True) as pipe:
                unique = self._unique_values(resource)
                await pipe.watch(
                    *[self.keys.unique(u, v) for u, v in unique.items()] or [self.keys.version]
                )
                await self._check_unique(pipe, resource, unique, {})
                members: dict[str, str] = {}
                if type_name == "Group":
                    members = await self._member_types(pipe, resource)
                _multi(pipe)
                self._queue_store(pipe, resource, None, unique, {})
                if type_name == "Group":
                    self._queue_members(pipe, resource.id, set(), set(members))
                await pipe.execute()
        except WatchError:
            raise UniquenessException(detail="a unique value was taken meanwhile") from None
        except RedisError as exc:
            raise _unavailable("Redis", exc) from None
        log.info("scim %s: created %s %r", provenance.client.name, type_name, resource.id)
        if type_name == "User":
            await self._fill_groups([resource])
        return resource

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        type_name = cast(str, resource_type.name)
        provenance = self._provenance()
        resource_id = cast(str, resource.id)
        key = self.keys.resource(type_name, resource_id)
        updated = self._prepare(resource)
        if type_name == "User":
            require_subject(updated, provenance.client)
        async with self._transaction(type_name, resource_id) as pipe:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                raise NotFoundException(detail=f"{type_name} {resource_id!r} not found")
            stored = self._load(type_name, raw)
            _check_version(stored, expected_version)
            unique = self._unique_values(updated)
            old_unique = self._unique_values(stored)
            await self._check_unique(pipe, updated, unique, old_unique)
            updated.meta = cast(Meta, stored.meta).model_copy(
                update={
                    "location": None,
                    "last_modified": datetime.now(UTC),
                    "version": await self._next_version(),
                }
            )
            events: list[RevocationEvent] = []
            old_members: set[str] = set()
            new_members: dict[str, str] = {}
            if type_name == "User":
                events.extend(events_for_user_change(stored, updated, provenance))
            else:
                old_members = _member_ids(stored)
                new_members = await self._member_types(pipe, updated)
                gone = old_members - set(new_members)
                if gone:
                    users = await self._expand_users(gone)
                    events.extend(
                        claims_changed(
                            users, resource_id, cast(Group, updated).display_name, provenance
                        )
                    )
            await self._publish_or_503(events, provenance, type_name, resource_id)
            _multi(pipe)
            self._queue_store(pipe, updated, stored, unique, old_unique)
            if type_name == "Group":
                self._queue_members(pipe, resource_id, old_members, set(new_members))
            await pipe.execute()
        if type_name == "User":
            await self._fill_groups([updated])
        return updated

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        type_name = cast(str, resource_type.name)
        provenance = self._provenance()
        key = self.keys.resource(type_name, resource_id)
        async with self._transaction(type_name, resource_id) as pipe:
            parents_key = self.keys.member_of(resource_id)
            await pipe.watch(key, parents_key)
            raw = await pipe.get(key)
            if raw is None:
                raise NotFoundException(detail=f"{type_name} {resource_id!r} not found")
            stored = self._load(type_name, raw)
            _check_version(stored, expected_version)
            parent_ids = sorted(_decode(p) for p in await pipe.smembers(parents_key))
            if parent_ids:
                await pipe.watch(*[self.keys.resource("Group", p) for p in parent_ids])
            parents = await self._get_many_in(pipe, "Group", parent_ids)
            events: list[RevocationEvent] = []
            members: set[str] = set()
            if type_name == "User":
                events.extend(events_for_user_change(stored, None, provenance))
            else:
                members = _member_ids(stored)
                users = await self._expand_users(members)
                events.extend(
                    claims_changed(users, resource_id, cast(Group, stored).display_name, provenance)
                )
            await self._publish_or_503(events, provenance, type_name, resource_id)
            versions = [await self._next_version() for _ in parents]
            _multi(pipe)
            for parent, version in zip(parents, versions, strict=True):
                parent.members = [
                    m for m in (parent.members or []) if m.value != resource_id
                ] or None
                parent.meta = cast(Meta, parent.meta).model_copy(
                    update={"last_modified": datetime.now(UTC), "version": version}
                )
                pipe.set(self.keys.resource("Group", cast(str, parent.id)), self._dump(parent))
            pipe.delete(parents_key)
            if type_name == "Group":
                self._queue_members(pipe, resource_id, members, set())
                pipe.hdel(self.keys.group_names, resource_id)
            self._queue_unstore(pipe, stored)
            await pipe.execute()

    # ------------------------------------------------------------------ write helpers

    @contextlib.asynccontextmanager
    async def _transaction(self, type_name: str, resource_id: str) -> AsyncIterator[Any]:
        """A WATCH/MULTI pipeline; a watched key that changed is a 412, Redis down a 503."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                yield pipe
        except WatchError:
            raise PreconditionFailedException(
                detail=f"{type_name} {resource_id!r} changed while this request was served; "
                "read it again and retry"
            ) from None
        except RedisError as exc:
            raise _unavailable("Redis", exc) from None

    @staticmethod
    def _prepare(resource: Resource[Any]) -> Resource[Any]:
        """A copy fit to store: no password, no computed ``groups``, no location."""
        copy = resource.model_copy(deep=True)
        if isinstance(copy, User):
            copy.password = None
            copy.groups = None
        return copy

    async def _check_unique(
        self,
        pipe: Any,
        resource: Resource[Any],
        unique: dict[str, Any],
        old_unique: dict[str, Any],
    ) -> None:
        changed = {u: v for u, v in unique.items() if old_unique.get(u) != v}
        if not changed:
            return
        owner_keys = [self.keys.unique(u, v) for u, v in changed.items()]
        await pipe.watch(*owner_keys)
        owners = [await pipe.get(k) for k in owner_keys]
        for (urn, _value), owner in zip(changed.items(), owners, strict=True):
            if owner is not None and _decode(owner) != resource.id:
                attribute = urn.rsplit(":", 1)[-1]
                raise UniquenessException(
                    detail=f"{attribute} is already taken by another resource"
                )

    async def _member_types(self, pipe: Any, group: Resource[Any]) -> dict[str, str]:
        """member id -> "User"/"Group" for every member of ``group``; unknown ids are a 400."""
        ids = sorted(_member_ids(group))
        if len(ids) > self.max_members:
            raise InvalidValueException(
                detail=f"a group holds at most {self.max_members} members, got {len(ids)}"
            )
        if group.id in ids:
            raise InvalidValueException(detail="a group cannot be a member of itself")
        types: dict[str, str] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            check = self.redis.pipeline(transaction=False)
            for member in chunk:
                check.exists(self.keys.resource("User", member))
                check.exists(self.keys.resource("Group", member))
            flags = await check.execute()
            for i, member in enumerate(chunk):
                if flags[2 * i]:
                    types[member] = "User"
                elif flags[2 * i + 1]:
                    types[member] = "Group"
        unknown = [m for m in ids if m not in types]
        if unknown:
            shown = ", ".join(repr(m) for m in unknown[:5])
            raise InvalidValueException(
                detail=f"members: no User or Group with id {shown}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        members = getattr(group, "members", None) or []
        for member in members:
            member.type = types[member.value]
        return types

    async def _expand_users(self, member_ids: Iterable[str]) -> list[Resource[Any]]:
        """The users among ``member_ids`` and in the groups among them, nested, each once."""
        users: dict[str, Resource[Any]] = {}
        seen_groups: set[str] = set()
        pending = sorted(set(member_ids))
        while pending:
            batch, pending = pending[:_CHUNK], pending[_CHUNK:]
            for user in await self._get_many("User", batch):
                users.setdefault(cast(str, user.id), user)
            group_ids = [g for g in batch if g not in users and g not in seen_groups]
            seen_groups.update(group_ids)
            for group in await self._get_many("Group", group_ids):
                pending.extend(sorted(_member_ids(group) - seen_groups - set(users)))
            if len(users) > self.max_members:
                raise InvalidValueException(
                    detail=f"this change affects more than {self.max_members} users"
                )
        return list(users.values())

    async def _get_many_in(self, pipe: Any, type_name: str, ids: Sequence[str]) -> list[Any]:
        out = []
        for resource_id in ids:
            raw = await pipe.get(self.keys.resource(type_name, resource_id))
            if raw is not None:
                out.append(self._load(type_name, raw))
        return out

    def _queue_store(
        self,
        pipe: Any,
        resource: Resource[Any],
        stored: Resource[Any] | None,
        unique: dict[str, Any],
        old_unique: dict[str, Any],
    ) -> None:
        type_name = _type_name(resource)
        resource_id = cast(str, resource.id)
        if stored is not None:
            old_index = set(self._indexed_values(stored))
            new_index = set(self._indexed_values(resource))
            for attribute, value in old_index - new_index:
                pipe.srem(self.keys.eq(type_name, attribute, value), resource_id)
            for urn, value in old_unique.items():
                if unique.get(urn) != value:
                    pipe.delete(self.keys.unique(urn, value))
        for attribute, value in self._indexed_values(resource):
            pipe.sadd(self.keys.eq(type_name, attribute, value), resource_id)
        for urn, value in unique.items():
            pipe.set(self.keys.unique(urn, value), resource_id)
        pipe.set(self.keys.resource(type_name, resource_id), self._dump(resource))
        pipe.sadd(self.keys.all(type_name), resource_id)
        if type_name == "Group":
            name = cast(Group, resource).display_name
            if name:
                pipe.hset(self.keys.group_names, resource_id, name)
            else:
                pipe.hdel(self.keys.group_names, resource_id)

    def _queue_unstore(self, pipe: Any, stored: Resource[Any]) -> None:
        type_name = _type_name(stored)
        resource_id = cast(str, stored.id)
        for attribute, value in self._indexed_values(stored):
            pipe.srem(self.keys.eq(type_name, attribute, value), resource_id)
        for urn, value in self._unique_values(stored).items():
            pipe.delete(self.keys.unique(urn, value))
        pipe.delete(self.keys.resource(type_name, resource_id))
        pipe.srem(self.keys.all(type_name), resource_id)

    def _queue_members(
        self, pipe: Any, group_id: str, old_members: set[str], new_members: set[str]
    ) -> None:
        for member in old_members - new_members:
            pipe.srem(self.keys.member_of(member), group_id)
        for member in new_members - old_members:
            pipe.sadd(self.keys.member_of(member), group_id)

    async def _publish_or_503(
        self,
        events: Sequence[RevocationEvent],
        provenance: Provenance,
        type_name: str,
        resource_id: str,
    ) -> None:
        if not events:
            return
        began = time.monotonic()
        try:
            await self._publish(events)
        except InfrastructureError as exc:
            log.warning(
                "scim %s: %s %r not changed: %d revocation(s) not acknowledged by Kafka: %s",
                provenance.client.name,
                type_name,
                resource_id,
                len(events),
                " ".join(str(exc).split()),
            )
            raise _unavailable("Kafka", exc) from None
        log.info(
            "scim %s: %s %r: published %s in %.1f ms",
            provenance.client.name,
            type_name,
            resource_id,
            ", ".join(f"{e.type} for {e.subject.id!r}" for e in events[:10])
            + (f" and {len(events) - 10} more" if len(events) > 10 else ""),
            (time.monotonic() - began) * 1000,
        )


def _multi(pipe: Any) -> None:
    pipe.multi()  # redis-py's Pipeline.multi has no annotations


def _type_name(resource: Resource[Any]) -> str:
    return cast(str, cast(Meta, resource.meta).resource_type)


def _member_ids(group: Resource[Any]) -> set[str]:
    members: list[GroupMember] = getattr(group, "members", None) or []
    return {m.value for m in members if m.value}


def _check_version(resource: Resource[Any], expected_version: str | None) -> None:
    version = cast(Meta, resource.meta).version
    if expected_version is not None and version != expected_version:
        raise PreconditionFailedException(
            detail=f"version mismatch: the resource is at {version}, not {expected_version}"
        )
