"""Keys: the private key file is 0600 from its first byte and never written through a link;
a JWKS URL is fetched with bounded size and time, without scheme changes. Loopback only."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schemas import ConfigError, KeySet, SigningKey

pytestmark = pytest.mark.timeout(60)

KEY = SigningKey.generate("k1")
JWKS = json.dumps({"keys": [KEY.public_jwk()]}).encode()


# ----------------------------------------------------------------- the private key file


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_private_creates_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "private.jwk.json"
    old = os.umask(0)
    try:
        KEY.write_private(path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert SigningKey.from_file(path).kid == "k1"


def test_write_private_refuses_an_existing_file_without_force(tmp_path: Path) -> None:
    path = tmp_path / "private.jwk.json"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="exists"):
        KEY.write_private(path)
    assert path.read_text() == "{}"


def test_write_private_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "private.jwk.json"
    link.symlink_to(victim)
    with pytest.raises(ConfigError):
        KEY.write_private(link)
    dangling = tmp_path / "dangling.jwk.json"
    dangling.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(ConfigError):
        KEY.write_private(dangling)
    assert not (tmp_path / "nowhere.json").exists()
    KEY.write_private(link, force=True)
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert _mode(link) == 0o600
    assert SigningKey.from_file(link).kid == "k1"


def test_force_never_puts_the_key_in_the_old_file(tmp_path: Path) -> None:
    # The old file may be readable by others (0644) or linked from elsewhere: the key
    # must go to a new 0600 inode, never be written into the old one and chmod-ed later.
    path = tmp_path / "private.jwk.json"
    path.write_text("old")
    path.chmod(0o644)
    other_name = tmp_path / "hard-link"
    os.link(path, other_name)
    KEY.write_private(path, force=True)
    assert other_name.read_text() == "old"
    assert _mode(path) == 0o600
    assert SigningKey.from_file(path).kid == "k1"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------- KeySet.from_url


def _serve(handler: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(OSError):  # the client gave up
                handler(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _reply(h: BaseHTTPRequestHandler, body: bytes, status: int = 200, **headers: str) -> None:
    h.send_response(status)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anything connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(0.5)
    yield sock
    sock.close()


def test_from_url_loads_a_jwks(caplog: pytest.LogCaptureFixture) -> None:
    for base in _serve(lambda h: _reply(h, JWKS)):
        with caplog.at_level(logging.WARNING):
            assert KeySet.from_url(f"{base}/jwks.json").kids == ["k1"]
    assert "plain http" not in caplog.text  # loopback: no warning


def test_from_url_refuses_a_redirect_to_another_scheme(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    target = f"ftp://127.0.0.1:{port}/jwks.json"
    for base in _serve(lambda h: _reply(h, b"", 302, Location=target)):
        with pytest.raises(ConfigError, match="redirect"):
            KeySet.from_url(f"{base}/jwks.json")
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing ever connected to the ftp target


def test_from_url_follows_a_same_scheme_redirect() -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if h.path == "/old":
            _reply(h, b"", 301, Location="/jwks.json")
        else:
            _reply(h, JWKS)

    for base in _serve(handler):
        assert KeySet.from_url(f"{base}/old").kids == ["k1"]


def test_from_url_bounds_the_response_size() -> None:
    padded = json.dumps({"keys": [KEY.public_jwk()], "pad": "x" * (8 * 1024 * 1024)}).encode()
    for base in _serve(lambda h: _reply(h, padded)):
        with pytest.raises(ConfigError, match="larger than"):
            KeySet.from_url(f"{base}/jwks.json")


def test_from_url_bounds_the_total_time() -> None:
    stop = threading.Event()

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("content-length", str(len(JWKS)))
        h.end_headers()
        for byte in JWKS:  # one byte every 50 ms: each read is quick, the whole is not
            if stop.wait(0.05):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    for base in _serve(drip):
        started = time.monotonic()
        try:
            with pytest.raises(ConfigError, match="within"):
                KeySet.from_url(f"{base}/jwks.json", timeout=1.0)
        finally:
            stop.set()
        assert time.monotonic() - started < len(JWKS) * 0.05  # gave up before the drip ended


def test_from_url_warns_about_plain_http_off_loopback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError):
        KeySet.from_url("http://revocast-jwks.invalid/jwks.json", timeout=2.0)
    assert "plain http" in caplog.text


def test_keys_generate_force_never_writes_through_a_symlink(tmp_path: Path) -> None:
    import subprocess
    import sys

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o644)
    link = tmp_path / "private.jwk.json"
    link.symlink_to(victim)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "revocast.cli",
            "keys",
            "generate",
            "--kid",
            "k9",
            "--out",
            str(link),
            "--force",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me"
    assert _mode(victim) == 0o644
    assert not link.is_symlink()
    assert _mode(link) == 0o600
    assert SigningKey.from_file(link).kid == "k9"
