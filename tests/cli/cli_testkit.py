"""Helpers for the ``revocast`` command-line tests: run it as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Cli:
    """``revocast`` in a subprocess with a clean ``REVOCAST_*`` environment and a work dir."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env

    def run(
        self, *args: str, timeout: float = 180.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "revocast", *args],
            env={**self.env, **env},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "revocast", *args],
            env={**self.env, **env},
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (fails the test if there are more)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("revocast: error: "), lines[0]
    return lines[0]


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """Stop a started command with SIGTERM and return everything it printed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def clean_cli(workdir: Path, **env: str) -> Cli:
    """A Cli in ``workdir`` with no ``REVOCAST_*``/Kafka/Redis variables but ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REVOCAST_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
    }
    return Cli(workdir, {**base, "PYTHONUNBUFFERED": "1", **env})


def generate_keys(cli: Cli) -> tuple[Path, Path]:
    """``revocast keys generate`` in the work dir: (private key, public JWKS)."""
    result = cli.run(
        "keys", "generate", "--kid", "k-1",
        "--out", "private.jwk.json", "--jwks", "public.jwks.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cli.workdir / "private.jwk.json", cli.workdir / "public.jwks.json"
