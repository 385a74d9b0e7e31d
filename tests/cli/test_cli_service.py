"""The walk-through against the real broker: keys, topics, a consumer, heartbeats, a
revocation in force, the service's own answer, and what goes wrong said in one line."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from cli_testkit import Cli, clean_cli, error_line, generate_keys, stop

pytestmark = pytest.mark.integration


class Output:
    """Collects a started command's output lines in a thread; waits for a pattern."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if found := regex.search(line):
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self._cond.wait(min(remaining, 0.5))


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[tuple[Cli, Output, str]]:
    """topics + keys + `revocast consume --service orders --metrics-port 0` (no heartbeat)."""
    workdir = tmp_path_factory.mktemp("walkthrough")
    cli = clean_cli(
        workdir,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        REVOCAST_TOPIC_PREFIX=f"walk-{uuid.uuid4().hex[:10]}",
    )
    generate_keys(cli)
    cli.env["REVOCAST_SIGNING_KEY_FILE"] = str(workdir / "private.jwk.json")
    topics = cli.run("topics", "ensure", "--max-credential-lifetime", "24h")
    assert topics.returncode == 0, topics.stderr
    consumer = cli.start(
        "consume", "--service", "orders", "--jwks", "public.jwks.json", "--metrics-port", "0"
    )
    out = Output(consumer)
    port = out.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1)
    try:
        yield cli, out, f"http://127.0.0.1:{port}"
    finally:
        stop(consumer)


def test_consume_tells_its_lifecycle_in_one_line_each(stack: tuple[Cli, Output, str]) -> None:
    cli, out, _ = stack
    out.wait_for(r"INFO revocast\.consume: orders/\S+: connecting to \S+, waiting for topic ")
    out.wait_for(r"revocast\.consume: assigned 3 partitions of walk-\w+\.revocast\.events")
    out.wait_for(r"revocast\.consume: ready in [\d.]+ s: \d+ records read")
    # No heartbeat yet: the view is stale, and the line says what to run.
    out.wait_for(r"WARNING revocast\.consume: stale: .*is `revocast heartbeat` running\?")
    beat = cli.start("heartbeat", "--duration", "30")
    try:
        out.wait_for(r"revocast\.consume: fresh: every partition heard from within 5s")
    finally:
        stop(beat)


def test_a_revocation_is_in_force_and_the_service_says_so(
    stack: tuple[Cli, Output, str],
) -> None:
    cli, _, url = stack
    sid = f"s-{uuid.uuid4().hex[:8]}"
    revoke = cli.run(
        "revoke", "session", "--subject", "alice", "--session-id", sid, "--wait", "orders",
        "--timeout", "30",
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    assert re.search(r"^in force in orders [\d.]+ ms after it was published:$", revoke.stdout, re.M)
    inspect = cli.run(
        "inspect", "--url", url, "--subject", "alice", "--session-id", sid, "--expect", "revoked"
    )
    assert inspect.returncode == 0, inspect.stderr
    assert f"revoked (session_revoked): session '{sid}' is revoked" in inspect.stdout
    other = cli.run(
        "inspect", "--url", url, "--subject", "alice", "--session-id", "s-other", "--json"
    )
    assert other.returncode == 0, other.stderr
    answer = json.loads(other.stdout)
    assert answer["decision"]["verdict"] == "allow"
    assert answer["service"] == "orders"
    assert answer["ready"] is True
    assert sum(1 for o in answer["applied_through"].values() if o >= 0) >= 1
    wrong = cli.run("inspect", "--url", url, "--session-id", "s-other", "--expect", "revoked")
    assert wrong.returncode == 1
    assert "expected revoked, the service decided allow" in error_line(wrong)


def test_a_revocation_signed_with_an_untrusted_key_names_the_dead_letters(
    stack: tuple[Cli, Output, str],
) -> None:
    cli, out, _ = stack
    other = cli.run("keys", "generate", "--kid", "rogue", "--out", "rogue.jwk.json", "--force")
    assert other.returncode == 0, other.stderr
    revoke = cli.run(
        "revoke", "token", "--subject", "bob", "--jti", "j-1", "--wait", "orders",
        "--timeout", "5", REVOCAST_SIGNING_KEY_FILE=str(cli.workdir / "rogue.jwk.json"),
    )  # fmt: skip
    assert revoke.returncode == 1
    line = error_line(revoke)
    assert "is not in force in orders" in line
    assert "applied by no service" in line
    assert re.search(r"dead-lettered by orders/\S+ \(unknown_key: kid 'rogue'", line), line
    assert "REVOCAST_JWKS" in line
    event_id = revoke.stdout.split()[2]
    status = cli.run("status", event_id)
    assert status.returncode == 1
    assert "unknown_key" in error_line(status)
    out.wait_for(r"WARNING revocast\.consume: dead-lettered 1 record")


def test_log_level_and_format_come_from_the_environment(stack: tuple[Cli, Output, str]) -> None:
    cli, _, _ = stack
    quiet = cli.start(
        "consume", "--service", "quiet", "--jwks", "public.jwks.json",
        REVOCAST_LOG_LEVEL="WARNING", REVOCAST_LOG_FORMAT="json",
    )  # fmt: skip
    out = Output(quiet)
    out.wait_for(r'"msg": "stale: ', timeout=180)
    stop(quiet)
    records = [json.loads(line) for line in out.lines if line.startswith("{")]
    assert records, out.lines
    assert all(r["level"] in ("WARNING", "ERROR") for r in records), records
    assert not any("ready in" in r["msg"] for r in records)


def test_topics_ensure_reports_once_in_human_units_and_raises_on_request(
    stack: tuple[Cli, Output, str],
) -> None:
    cli, _, _ = stack
    again = cli.run("topics", "ensure", "--max-credential-lifetime", "72h")
    assert again.returncode == 0
    assert re.search(
        r"^exists  walk-\w+\.revocast\.events: .*retention 25 h; must cover "
        r"credential lifetime 3 d \+ margin 1 h$",
        again.stdout,
        re.M,
    ), again.stdout
    warnings = again.stderr.splitlines()
    assert len(warnings) == 2, again.stderr  # events and dead letters, each once
    assert all(w.startswith("warning: ") and "--alter-retention" in w for w in warnings)
    too_long = cli.run(
        "revoke", "session", "--subject", "a", "--session-id", "s", "--expires-in", "48h"
    )
    assert too_long.returncode == 1
    assert "--max-credential-lifetime 48h --alter-retention" in error_line(too_long)
    raised = cli.run("topics", "ensure", "--max-credential-lifetime", "72h", "--alter-retention")
    assert raised.returncode == 0, raised.stderr
    assert "retention 73 h (raised from 25 h)" in raised.stdout
    assert raised.stderr == ""
    # The broker now remembers the lifetime: a 48 h credential can be revoked.
    ok = cli.run("revoke", "session", "--subject", "a", "--session-id", "s", "--expires-in", "48h")
    assert ok.returncode == 0, ok.stderr


def test_print_config_shows_both_sides_with_env_names_and_sources(
    stack: tuple[Cli, Output, str],
) -> None:
    cli, _, _ = stack
    result = cli.run("print-config", "--json", REVOCAST_MAX_STALENESS="7")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    rows = config["settings"]
    consumer = {row["name"]: row for row in rows if row["side"] == "consumer"}
    producer = {row["name"]: row for row in rows if row["side"] == "producer"}
    assert config["consumer"]["max_staleness"] == 7.0
    assert config["signing_key_file"] == producer["signing_key_file"]["value"]
    assert consumer["max_staleness"] == {
        **consumer["max_staleness"],
        "value": 7.0,
        "source": "env",
        "env": "REVOCAST_MAX_STALENESS",
    }
    assert consumer["jwks"]["source"] == "default"
    assert consumer["kafka_bootstrap_servers"]["env"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert consumer["redis_url"]["env"] == "REDIS_URL"
    assert producer["signing_key_file"]["source"] == "env"
    assert producer["api_tokens"]["source"] == "default"
    for name in ("snapshot_interval", "redis_snapshots", "metrics_port"):
        assert name in consumer
