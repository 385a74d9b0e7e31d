"""How ``publish_many`` packs events into records: per partition, in order, bounded, signed once.

Guarantees:

* **Same partition as ``publish()``.** An event's partition is chosen the way the
  producer's default partitioner does (murmur2 of the key, the subject id, as the Java
  client), so one subject's events stay in one partition, in order, however they are
  published; events without a key (heartbeats) are spread round-robin.
* **Bounded records.** A batch record holds at most :data:`~schemas.MAX_BATCH_EVENTS`
  events, and its signed value at most :data:`MAX_BATCH_VALUE` bytes (the JWS, not only
  its payload: base64url makes the payload 4/3 larger). A record of one event is an
  ordinary single-event record.
* **The contract's bytes.** :func:`batch_payload` is byte for byte what
  :func:`schemas.encode_batch` signs (a test keeps it so); each event is stamped just
  before it is serialized, and serialized once: its JSON both sizes the batch and goes
  into it (half the CPU of validating and serializing every envelope again).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from kafka.partitioner.default import murmur2

from schemas import MAX_BATCH_EVENTS, Envelope, SigningKey
from schemas.batch import MAX_BATCH_BYTES

__all__ = ["MAX_BATCH_VALUE", "batch_payload", "by_partition", "records"]

MAX_BATCH_VALUE = MAX_BATCH_BYTES
"""Largest batch record value built: the signed JWS, not only its payload."""
# Header, signature and a margin for the stamps fit in 512 bytes.
_MAX_PAYLOAD = (MAX_BATCH_VALUE - 512) * 3 // 4
_OVERHEAD = len('{"v":1,"type":"batch","events":[]}') + 64


def batch_payload(envelope_jsons: Sequence[bytes]) -> bytes:
    """The JSON of an :class:`~schemas.EventBatch` of envelopes already serialized."""
    return b'{"v":1,"type":"batch","events":[' + b",".join(envelope_jsons) + b"]}"


def by_partition(
    envelopes: Sequence[Envelope], partitions: Sequence[int] | None, available: Sequence[int]
) -> list[tuple[int, list[int]]]:
    """(partition, indexes of its events in input order); ``partitions``: one per event,
    else chosen by key among ``available`` (the topic's sorted partition ids)."""
    spread = itertools.count()
    groups: dict[int, list[int]] = {}
    for i, env in enumerate(envelopes):
        if partitions is not None:
            part = partitions[i]
        else:
            key = env.partition_key
            pick = (murmur2(key) & 0x7FFFFFFF) if key is not None else next(spread)
            part = available[pick % len(available)]
        groups.setdefault(part, []).append(i)
    return list(groups.items())


def records(
    envelopes: list[Envelope], indexes: Sequence[int], signer: SigningKey | None
) -> Iterator[tuple[list[int], bytes]]:
    """Cut one partition's events into records: (indexes, value) each. Restamps the
    envelopes in ``envelopes`` in place (their ``published_at_ns`` is the send time)."""
    chunk: list[int] = []
    jsons: list[bytes] = []
    size = _OVERHEAD
    for i in indexes:
        env = envelopes[i] = envelopes[i].restamped()
        data = env.model_dump_json().encode()
        if chunk and (len(chunk) >= MAX_BATCH_EVENTS or size + len(data) > _MAX_PAYLOAD):
            yield chunk, _signed(jsons, signer)
            chunk, jsons, size = [], [], _OVERHEAD
        chunk.append(i)
        jsons.append(data)
        size += len(data) + 1
    if chunk:
        yield chunk, _signed(jsons, signer)


def _signed(jsons: list[bytes], signer: SigningKey | None) -> bytes:
    payload = jsons[0] if len(jsons) == 1 else batch_payload(jsons)
    return signer.sign(payload) if signer is not None else payload
