"""Fixtures for the producer's tests (the session broker comes from tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.settings import ProducerSettings
from schemas import SigningKey


@pytest.fixture(autouse=True)
def no_revocast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Producer settings read REVOCAST_*: start every test from the documented defaults."""
    for field in ProducerSettings.model_fields:
        monkeypatch.delenv(f"REVOCAST_{field.upper()}", raising=False)


@pytest.fixture
def key_file(tmp_path: Path, signing_key: SigningKey) -> Path:
    """The session signing key as a private JWK file (what REVOCAST_SIGNING_KEY_FILE names)."""
    path = tmp_path / "signing.jwk.json"
    path.write_text(json.dumps(signing_key.private_jwk()))
    return path
