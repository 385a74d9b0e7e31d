"""Poll delivery (RFC 8936) and stream management (SSF 1.0 §8) against a transmitter on loopback.

The transmitter is the test peer in :mod:`tests.ingress_ssf.transmitter_peer` (served by a real
uvicorn); the receiver side is the real thing: discovery with the issuer check, JWKS fetched
over HTTP, Redis for pending acknowledgements, the real broker for revocations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from producer.ingress.ssf import (
    PollClient,
    PushServer,
    SetReceiver,
    SsfSettings,
    SsfStore,
    StreamClient,
    TransmitterConfig,
    TransmitterUnavailableError,
)
from producer.ingress.ssf.testing import TransmitterKey, make_set, session_revoked_set
from producer.ingress.ssf.vocabulary import CAEP, RISC, STREAM_UPDATED
from producer.publisher import RevocationPublisher
from schemas import InfrastructureError, SessionRevoked, SigningKey, TopicNames
from tests.ingress_ssf.conftest import AUDIENCE, PUSH_TOKEN, SsfKit
from tests.ingress_ssf.transmitter_peer import PeerServer, TransmitterPeer

pytestmark = pytest.mark.integration

MGMT = "management-token-0123456789"


@pytest.fixture
def peer() -> Iterator[TransmitterPeer]:
    p = TransmitterPeer(TransmitterKey.generate("ES256", kid="peer-1"), MGMT, AUDIENCE)
    with PeerServer(p):
        yield p


def config_for(peer: TransmitterPeer, **overrides: Any) -> TransmitterConfig:
    fields: dict[str, Any] = {
        "name": "peer",
        "issuer": peer.issuer,
        "audience": [AUDIENCE],
        "delivery": "poll",
        "management_token": MGMT,
    }
    fields.update(overrides)
    return TransmitterConfig.model_validate(fields)


def poll_stream(kit: SsfKit, peer: TransmitterPeer) -> tuple[TransmitterConfig, SsfSettings]:
    """A poll stream created at the peer: its configuration (with stream_id) and settings."""
    config = config_for(peer)
    with StreamClient(config, kit.settings(config)) as client:
        stream = config.model_copy(update={"stream_id": client.create().stream_id})
    return stream, kit.settings(stream, poll_return_immediately=True)


def user_set(peer: TransmitterPeer, user: str, **kw: Any) -> str:
    return session_revoked_set(peer.key, iss=peer.issuer, aud=AUDIENCE, user=user, **kw)


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_stream_management_create_read_update_status_verify(
    kit: SsfKit,
    peer: TransmitterPeer,
) -> None:
    config = config_for(peer)
    settings = kit.settings(config)
    with StreamClient(config, settings) as client:
        created = client.create(description="revocast")
        assert created.iss == peer.issuer
        assert created.endpoint_url == f"{peer.issuer}/ssf/poll/{created.stream_id}"
        assert CAEP + "session-revoked" in created.events_requested
        assert STREAM_UPDATED in created.events_requested
        assert client.get(created.stream_id).stream_id == created.stream_id
        updated = client.update(created.stream_id, description="revocast, renamed")
        assert updated.description == "revocast, renamed"
        replaced = client.replace(created.stream_id, events_requested=[RISC + "account-disabled"])
        assert replaced.events_delivered == [RISC + "account-disabled"]
        assert replaced.description is None  # PUT: a missing receiver property is deleted
        assert client.status(created.stream_id).status == "enabled"
        paused = client.set_status("paused", reason="maintenance", stream_id=created.stream_id)
        assert paused is not None
        assert paused.status == "paused"

        # verification: the receiver asks with a fresh state, the answer comes by poll
        stream = config.model_copy(update={"stream_id": created.stream_id})
        receiver = SetReceiver(kit.settings(stream), kit.store, lambda: kit.publisher)
        try:
            state = receiver.new_verification_state("peer")
            client.verify(state, stream_id=created.stream_id)
            poller = PollClient(receiver, stream)
            deadline = time.monotonic() + 10
            while "verified_at" not in kit.store.status("peer"):
                assert time.monotonic() < deadline, "no verification event arrived"
                poller.poll_once()
            poller.poll_once()  # carries the ack
            assert len(peer.acked) == 1
            poller.close()
        finally:
            receiver.close()
        client.delete(created.stream_id)
        with pytest.raises(TransmitterUnavailableError, match="404"):
            client.get(created.stream_id)


def test_stream_answers_with_the_wrong_issuer_or_audience_are_refused(
    peer: TransmitterPeer, make_settings: Callable[..., SsfSettings]
) -> None:
    config = config_for(peer)
    with StreamClient(config, make_settings(config)) as client:
        created = client.create()
        peer.streams[created.stream_id]["iss"] = "https://impostor.example"
        with pytest.raises(TransmitterUnavailableError, match="impostor"):
            client.get(created.stream_id)
        peer.streams[created.stream_id].update(iss=peer.issuer, aud="https://someone-else")
        with pytest.raises(TransmitterUnavailableError, match="audiences"):
            client.get(created.stream_id)
    wrong = config_for(
        peer,
        issuer="https://not-the-peer.example",
        configuration_url=f"{peer.issuer}/.well-known/ssf-configuration",
    )
    with (
        StreamClient(wrong, make_settings(wrong)) as client,
        pytest.raises(TransmitterUnavailableError, match="not the configured"),
    ):
        client.create()
    insecure = config_for(peer, configuration_url="http://transmitter.example/.well-known/x")
    with (
        StreamClient(insecure, make_settings(insecure)) as client,
        pytest.raises(TransmitterUnavailableError, match="https"),
    ):
        client.metadata()


def test_poll_acknowledges_after_kafka_reports_set_errs_and_resumes_after_restart(
    kit: SsfKit,
    peer: TransmitterPeer,
    redis_url: str,
) -> None:
    config, settings = poll_stream(kit, peer)
    sid = config.stream_id
    assert sid is not None
    good = [user_set(peer, "alice", session_id="s-1"), user_set(peer, "bob", session_id="s-2")]
    bad = peer.key.sign(
        make_set(
            iss=peer.issuer,
            aud="https://someone-else.example",
            events={CAEP + "session-revoked": {}},
            sub_id={"format": "opaque", "id": "s-3"},
        )
    )
    for token in [*good, bad]:
        peer.emit(sid, token)

    receiver = SetReceiver(settings, kit.store, lambda: kit.publisher)
    poller = PollClient(receiver, config)
    first = poller.poll_once()
    assert sorted(first.applied) == sorted(jti_of(t) for t in good)
    assert first.refused == [jti_of(bad)]
    assert peer.acked == []  # acknowledgements go out with the next poll
    events = kit.published(expect=2)
    assert sorted(e.event.session_id for e in events if isinstance(e.event, SessionRevoked)) == [
        "s-1",
        "s-2",
    ]
    acks, errs = kit.store.pending("peer")
    assert sorted(acks) == sorted(jti_of(t) for t in good)
    assert errs[jti_of(bad)]["err"] == "invalid_audience"
    poller.close()
    receiver.close()

    # a restart: a new receiver and poll client find the pending acks in Redis
    restarted_store = SsfStore.from_url(redis_url, kit.store.prefix)
    receiver = SetReceiver(settings, restarted_store, lambda: kit.publisher)
    poller = PollClient(receiver, config)
    second = poller.poll_once()
    assert sorted(second.acked) == sorted(jti_of(t) for t in good)
    assert sorted(peer.acked) == sorted(jti_of(t) for t in good)
    assert peer.set_errs[jti_of(bad)]["err"] == "invalid_audience"
    assert peer.queue == {}
    assert restarted_store.pending("peer") == ([], {})
    poller.close()
    receiver.close()
    restarted_store.close()


def test_poll_leaves_a_set_unacknowledged_while_the_broker_is_down(
    kit: SsfKit,
    peer: TransmitterPeer,
    signing_key: SigningKey,
    topics: TopicNames,
) -> None:
    stream, settings = poll_stream(kit, peer)
    sid = stream.stream_id
    assert sid is not None
    token = user_set(peer, "carol", session_id="s-c")
    peer.emit(sid, token)

    def unreachable() -> RevocationPublisher:
        return RevocationPublisher(
            "127.0.0.1:1", topics, signing_key, connect_timeout=1, delivery_timeout=1
        )

    down = SetReceiver(settings, kit.store, unreachable)
    with pytest.raises(InfrastructureError):
        PollClient(down, stream).poll_once()
    down.close()
    assert kit.store.pending("peer") == ([], {})
    assert jti_of(token) in peer.queue  # still held by the transmitter

    # the loop: runs in a thread, publishes, acknowledges, stops when told
    receiver = SetReceiver(settings, kit.store, lambda: kit.publisher)
    poller = PollClient(receiver, stream)
    stop = threading.Event()
    loop = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    loop.start()
    deadline = time.monotonic() + 15
    while jti_of(token) not in peer.acked:
        assert time.monotonic() < deadline, "the poll loop did not acknowledge the SET"
        time.sleep(0.05)
    stop.set()
    loop.join(10)
    assert not loop.is_alive()
    [env] = kit.published(expect=1)
    assert isinstance(env.event, SessionRevoked)
    assert env.event.session_id == "s-c"
    poller.close()
    receiver.close()


def test_push_stream_created_verified_and_paused_through_the_transmitter(
    kit: SsfKit,
    peer: TransmitterPeer,
) -> None:
    config = config_for(peer, delivery="push", push_token=PUSH_TOKEN)
    settings = kit.settings(config)  # JWKS by discovery over HTTP
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        registered = config.model_copy(update={"push_endpoint_url": server.push_url("peer")})
        with StreamClient(registered, settings) as client:
            created = client.create()
            assert created.delivery["endpoint_url"] == server.push_url("peer")
            state = server.ingress.receiver.new_verification_state("peer")
            client.verify(state, stream_id=created.stream_id)
        deadline = time.monotonic() + 10
        while not peer.pushed:
            assert time.monotonic() < deadline, "the verification event was not pushed"
            time.sleep(0.05)
        assert peer.pushed[0][0] == 202, peer.pushed
        assert "verified_at" in kit.store.status("peer")
        paused = peer.sign(
            {STREAM_UPDATED: {"status": "disabled", "reason": "inactivity"}},
            {"format": "opaque", "id": created.stream_id},
        )
        peer.emit(created.stream_id, paused)
        assert kit.store.status("peer")["status"] == "disabled"
        peer.emit(created.stream_id, user_set(peer, "dave", session_id="s-d"))
        assert [code for code, _ in peer.pushed] == [202, 202, 202]
    [env] = kit.published(expect=1)
    assert isinstance(env.event, SessionRevoked)
    assert env.event.session_id == "s-d"


def test_keys_by_discovery_rotation_and_size_limit(peer: TransmitterPeer, kit: SsfKit) -> None:
    """The JWKS comes from the issuer's metadata; a new kid triggers a refetch; a JWKS over
    the size limit is refused (503 for push: retriable), never partly read."""
    config = config_for(peer, delivery="push", push_token=PUSH_TOKEN)
    settings = kit.settings(config, jwks_min_refresh=0)
    receiver = SetReceiver(settings, kit.store, lambda: kit.publisher)
    try:
        first = user_set(peer, "henry")
        assert receiver.receive("peer", first).status == "applied"
        rotated = TransmitterKey.generate("EdDSA", kid="peer-2")
        peer.extra_keys = [rotated.public_jwk()]
        token = session_revoked_set(rotated, iss=peer.issuer, aud=AUDIENCE, user="ida")
        assert receiver.receive("peer", token).status == "applied"
    finally:
        receiver.close()
    small = kit.settings(config, max_document_bytes=1024, jwks_min_refresh=0)
    peer.extra_keys = [
        TransmitterKey.generate("RS256", kid=f"pad-{i}").public_jwk() for i in range(4)
    ]
    receiver = SetReceiver(small, kit.store, lambda: kit.publisher)
    try:
        with pytest.raises(TransmitterUnavailableError, match="larger than 1024 bytes"):
            receiver.receive("peer", user_set(peer, "jack"))
    finally:
        receiver.close()
    assert len(kit.published(expect=2)) == 2


def test_poll_loop_backs_off_boundedly_and_stops_when_told(
    kit: SsfKit, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = TransmitterConfig.model_validate(
        {
            "name": "gone",
            "issuer": "https://gone.example",
            "audience": [AUDIENCE],
            "delivery": "poll",
            "jwks": {"keys": []},
            "poll_url": f"http://127.0.0.1:{port}/poll",
        }
    )
    settings = kit.settings(config, poll_backoff_min=0.05, poll_backoff_max=0.4)
    receiver = SetReceiver(settings, kit.store, lambda: kit.publisher)
    poller = PollClient(receiver, config)
    stop = threading.Event()
    loop = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    with caplog.at_level("WARNING", logger="producer.ingress.ssf"):
        loop.start()
        time.sleep(2.0)
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    failures = [r for r in caplog.records if "poll from gone failed" in r.getMessage()]
    # 0.05, 0.1, 0.2, 0.4, 0.4, ... (+-20%): a handful in 2 s, not a tight loop, not none
    assert 2 <= len(failures) <= 12, len(failures)
    poller.close()
    receiver.close()


def test_known_keys_outlive_a_jwks_endpoint_that_is_down(kit: SsfKit) -> None:
    peer = TransmitterPeer(TransmitterKey.generate("EdDSA", kid="k-1"), MGMT, AUDIENCE)
    server = PeerServer(peer).__enter__()
    config = config_for(peer, delivery="push", push_token=PUSH_TOKEN)
    settings = kit.settings(config, jwks_max_age=0.1, jwks_min_refresh=0)
    receiver = SetReceiver(settings, kit.store, lambda: kit.publisher)
    try:
        assert receiver.receive("peer", user_set(peer, "kim")).status == "applied"
        server.__exit__(None, None, None)  # the transmitter's endpoints are gone
        time.sleep(0.2)  # the cached JWKS is now older than jwks_max_age
        assert receiver.receive("peer", user_set(peer, "lee")).status == "applied"
        stranger = TransmitterKey.generate("EdDSA", kid="k-2")
        token = session_revoked_set(stranger, iss=peer.issuer, aud=AUDIENCE, user="mo")
        with pytest.raises(TransmitterUnavailableError):  # unknown kid, cannot refetch: retry
            receiver.receive("peer", token)
    finally:
        receiver.close()
    assert len(kit.published(expect=2)) == 2
