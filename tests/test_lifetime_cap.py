"""One maximum credential lifetime, enforced by the publisher and every consumer alike.

The events topic retains the maximum lifetime plus a margin. An event whose expires_at
lies beyond it would live on in long-running consumers but be gone from a restarted
one's replay: the two would disagree. Both sides cap it, with a warning.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from consumers import RevocationState
from producer import RevocationPublisher
from schemas import Envelope, SessionRevoked, Subject, decode

FAR = datetime(2099, 12, 31, tzinfo=UTC)


def revoked(session: str, expires_at: datetime = FAR) -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id="alice", kind="human"), session_id=session, expires_at=expires_at
    )


def test_the_state_caps_a_fact_at_its_publish_time_plus_the_maximum_lifetime() -> None:
    env = Envelope.wrap(revoked("s-1"), issuer="x")
    published = env.published_at_ns / 1e9
    state = RevocationState(max_lifetime=3600)
    assert state.apply(env, published)
    assert state.capped == 1
    assert not state.check({"sid": "s-1"}, now=published + 3599).allowed
    assert state.check({"sid": "s-1"}, now=published + 3601).allowed
    # Without a maximum, the event's own expiry holds (and nothing is counted).
    plain = RevocationState()
    plain.apply(env, published)
    assert plain.capped == 0
    assert not plain.check({"sid": "s-1"}, now=published + 7200).allowed


def test_an_event_within_the_maximum_is_untouched() -> None:
    env = Envelope.wrap(revoked("s-2", datetime.now(UTC) + timedelta(minutes=5)), issuer="x")
    assert env.lifetime_capped(timedelta(hours=1)) is env
    state = RevocationState(max_lifetime=3600)
    state.apply(env)
    assert state.capped == 0


@pytest.mark.integration
def test_the_publisher_caps_and_warns(
    kafka_bootstrap, topics, signing_key, trusted_keys, caplog
) -> None:
    from tests.consumers.conftest import read_topic

    with RevocationPublisher(
        kafka_bootstrap, topics, signing_key, max_lifetime=timedelta(hours=24)
    ) as pub, caplog.at_level("WARNING", logger="producer.publisher"):
        published = pub.publish(revoked("s-3"))
    assert "maximum credential lifetime" in caplog.text
    records = read_topic(kafka_bootstrap, topics.events, lambda r: len(r) >= 1, timeout=15)
    env = decode(records[0].value, trusted_keys)
    assert env.event_id == published.event_id
    lifetime = env.event.expires_at - env.published_at
    assert timedelta(hours=23, minutes=59) < lifetime <= timedelta(hours=24)
    assert time.time() < env.event.expires_at.timestamp()
