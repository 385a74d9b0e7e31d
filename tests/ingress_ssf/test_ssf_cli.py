"""``revocast ssf`` as an operator runs it (subprocesses), against the transmitter peer,
the real broker and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.ingress.ssf.testing import TransmitterKey, session_revoked_set
from schemas import KeySet, SessionRevoked, SigningKey, TopicNames
from tests.ingress_ssf.conftest import AUDIENCE, read_events
from tests.ingress_ssf.transmitter_peer import PeerServer, TransmitterPeer
from tests.producer.producer_testkit import cli_env, prefix_of, run_cli

pytestmark = pytest.mark.integration

MGMT = "management-token-0123456789"


def test_stream_create_poll_once_status_and_config(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    prefix: str,
    topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    key_file = tmp_path / "signing.jwk.json"
    key_file.write_text(json.dumps(signing_key.private_jwk()))
    peer = TransmitterPeer(TransmitterKey.generate("RS256", kid="cli-peer"), MGMT, AUDIENCE)
    with PeerServer(peer):
        transmitter = {
            "name": "peer",
            "issuer": peer.issuer,
            "audience": [AUDIENCE],
            "delivery": "poll",
            "management_token": MGMT,
        }

        def env(**extra: object) -> dict[str, str]:
            return cli_env(
                KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                REVOCAST_TOPIC_PREFIX=prefix_of(topics),
                REVOCAST_SIGNING_KEY_FILE=str(key_file),
                REVOCAST_SSF_REDIS_URL=redis_url,
                REVOCAST_SSF_KEY_PREFIX=prefix,
                REVOCAST_SSF_TRANSMITTERS=json.dumps([{**transmitter, **extra}]),
            )

        created = run_cli("ssf", "stream", "create", "--transmitter", "peer", env=env())
        assert created.returncode == 0, created.stderr
        stream_id = json.loads(created.stdout)["stream_id"]
        status = run_cli(
            "ssf", "stream", "status", "--transmitter", "peer", env=env(stream_id=stream_id)
        )
        assert json.loads(status.stdout)["status"] == "enabled"
        paused = run_cli(
            "ssf",
            "stream",
            "status",
            "--transmitter",
            "peer",
            "--set",
            "paused",
            "--reason",
            "maintenance",
            env=env(stream_id=stream_id),
        )
        assert json.loads(paused.stdout)["status"] == "paused", paused.stderr
        assert peer.status[stream_id]["status"] == "paused"
        local = run_cli("ssf", "status", env=env(stream_id=stream_id))
        assert json.loads(local.stdout)[0]["status"] == "paused"
        run_cli(
            "ssf",
            "stream",
            "status",
            "--transmitter",
            "peer",
            "--set",
            "enabled",
            env=env(stream_id=stream_id),
        )

        token = session_revoked_set(
            peer.key, iss=peer.issuer, aud=AUDIENCE, user="gina", session_id="s-g"
        )
        peer.emit(stream_id, token)
        polled = run_cli(
            "ssf", "poll", "--transmitter", "peer", "--once", env=env(stream_id=stream_id)
        )
        assert polled.returncode == 0, polled.stderr
        assert len(json.loads(polled.stdout)["applied"]) == 1
        [env_event] = read_events(kafka_bootstrap, topics, trusted_keys, expect=1)
        assert isinstance(env_event.event, SessionRevoked)
        assert env_event.event.session_id == "s-g"

        local = run_cli("ssf", "status", env=env(stream_id=stream_id))
        [row] = json.loads(local.stdout)
        assert row["pending_acks"] == 1  # goes out with the next poll
        config = run_cli("ssf", "config", env=env())
        assert MGMT not in config.stdout
        assert '"management_token": "***"' in config.stdout
        missing = run_cli("ssf", "stream", "get", "--transmitter", "nobody", env=env())
        assert missing.returncode == 1
        assert "no SSF transmitter named 'nobody'" in missing.stderr
