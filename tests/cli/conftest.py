"""Fixtures for the ``revocast`` command line (helpers in ``cli_testkit``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cli_testkit import Cli, clean_cli, generate_keys


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return clean_cli(tmp_path)


@pytest.fixture
def broker_cli(cli: Cli, kafka_bootstrap: str) -> Cli:
    """A CLI pointed at the test broker with a topic prefix of its own (topics not created)."""
    cli.env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    cli.env["REVOCAST_TOPIC_PREFIX"] = f"cli-{uuid.uuid4().hex[:10]}"
    return cli


@pytest.fixture
def keys(cli: Cli) -> tuple[Path, Path]:
    return generate_keys(cli)
