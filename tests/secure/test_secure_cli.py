"""The command line against a SASL_SSL broker with ACLs: settings from REVOCAST_KAFKA_*.

`revocast topics ensure` runs as the admin principal, `revocast revoke` as the IAM
principal; both read the broker's topic configuration through the same options.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devstack import KafkaBroker, SecureSetup
from devstack.secure import ADMIN_USER, IAM_USER
from schemas import SigningKey, TopicNames
from schemas.security import KafkaSecurity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _env(security: KafkaSecurity, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_KAFKA_")}
    for name, value in security.model_dump(exclude_none=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"REVOCAST_KAFKA_{name.upper()}"] = str(value).lower() if isinstance(
            value, bool
        ) else str(value)
    env.update(extra)
    return env


def _revocast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "revocast", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_topics_ensure_and_revoke_speak_sasl_ssl(
    secure_broker: KafkaBroker, secure_setup: SecureSetup, tmp_path: Path
) -> None:
    prefix = f"c-{uuid.uuid4().hex[:8]}"
    common = ["--bootstrap-servers", secure_broker.bootstrap, "--topic-prefix", prefix]
    admin = _env(secure_setup.client(ADMIN_USER))
    made = _revocast(*common, "topics", "ensure", "--max-credential-lifetime", "72h", env=admin)
    assert made.returncode == 0, made.stderr
    secure_setup.grant(secure_broker.bootstrap, TopicNames.prefixed(prefix))

    key = tmp_path / "private.jwk.json"
    SigningKey.generate("cli-1").write_private(key)
    iam = _env(secure_setup.client(IAM_USER), REVOCAST_SIGNING_KEY_FILE=str(key))
    revoked = _revocast(
        *common, "revoke", "session", "--subject", "alice", "--kind", "human",
        "--session-id", "s-cli", "--expires-in", "48h", env=iam,
    )  # fmt: skip
    # 48 h is past the default lifetime (24 h): revoke reads the topic's retention over
    # SASL_SSL to allow it.
    assert revoked.returncode == 0, revoked.stderr
    # Without the options the same command fails in one line, naming the broker.
    plain = {k: v for k, v in iam.items() if not k.startswith("REVOCAST_KAFKA_")}
    refused = _revocast(
        *common, "revoke", "session", "--subject", "alice", "--kind", "human",
        "--session-id", "s-cli-2", env=plain,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
