"""The fast decode path (one pydantic-core JSON pass) gives exactly the careful path's result.

``schemas.codec._fast`` parses a valid record in one pass and returns ``None`` for anything
else, leaving it to the careful path (``json.loads`` + checks + ``model_validate``) to name
what is wrong. Whenever both accept a payload they must agree event for event; the fast
path must never accept what the careful path refuses.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from schemas import Envelope, InvalidEventError, encode_batch
from schemas.codec import _fast, _json_object, _validate
from tests.fuzz.test_fuzz_decode import FUZZ, _envelope, _json
from tests.test_schemas import all_events


def careful(payload: bytes) -> list[Envelope] | None:
    try:
        raw = _json_object(payload)
        if raw.get("type") == "batch":
            return [_validate(e) for e in raw["events"]]
        return [_validate(raw)]
    except (InvalidEventError, KeyError, TypeError):
        return None


def agree(payload: bytes) -> None:
    quick, slow = _fast(payload), careful(payload)
    if quick is not None:
        assert quick == slow, payload[:200]


def test_every_valid_event_and_batch_takes_the_fast_path_with_the_same_result() -> None:
    envs = [Envelope.wrap(e, issuer="x") for e in all_events()]
    for env in envs:
        payload = env.model_dump_json().encode()
        assert _fast(payload) == [env] == careful(payload)
    batch = encode_batch(envs, None)
    assert _fast(batch) == envs == careful(batch)


@FUZZ
@given(_envelope | _json)
def test_random_structures_never_take_the_fast_path_to_another_result(value: Any) -> None:
    agree(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(range(len(all_events()))), st.dictionaries(st.text(max_size=8), _json))
def test_valid_events_with_noise_agree(index: int, noise: dict[str, Any]) -> None:
    raw = json.loads(Envelope.wrap(all_events()[index], issuer="x").model_dump_json())
    raw["event"].update(noise)
    raw["event_id"] = str(uuid.uuid4())
    agree(json.dumps(raw).encode())
    # Duplicate keys: the last one wins in both parsers.
    text = json.dumps(raw)
    agree(("{" + '"issuer": "first", ' + text[1:]).encode())
