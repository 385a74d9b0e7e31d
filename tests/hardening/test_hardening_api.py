"""The HTTP API under hostile bodies: limits enforced while streaming, no 500, no leaks."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from producer.api import create_app
from producer.bodies import MAX_BODY
from producer.settings import ApiToken, ProducerSettings
from schemas import SigningKey, Subject, SubjectKind

HERE = Path(__file__).resolve().parent
TOKEN = "t" * 32
AUTH = {"authorization": f"Bearer {TOKEN}"}
MIB = 1024 * 1024


def _settings(**extra: object) -> ProducerSettings:
    return ProducerSettings(
        api_tokens=[
            ApiToken(
                name="iam", token=SecretStr(TOKEN), scopes=frozenset({"revoke:*", "status:read"})
            )
        ],
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings(), signer=SigningKey.generate("k"), warm_up=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


def _rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


@pytest.fixture
def api_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "api_server_proc.py"), TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        while True:  # uvicorn listens once its lifespan has started
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _stream_chunked(port: int, total: int, chunk: int = MIB) -> tuple[int, bytes]:
    """POST ``total`` bytes chunked; stop as soon as the server answers. (sent, response)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    response = b""
    try:
        sock.sendall(
            b"POST /v1/revocations/session HTTP/1.1\r\nHost: api\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += chunk
        try:
            while chunk_in := sock.recv(65536):
                response += chunk_in
                if b"\r\n\r\n" in response and response.endswith(b"}"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        sock.close()
    return sent, response


def test_a_400_mib_chunked_post_does_not_grow_the_servers_memory(
    api_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = api_process
    before = _rss_kib(proc.pid)
    sent, response = _stream_chunked(port, 400 * MIB)
    after = _rss_kib(proc.pid)
    grown_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    print(
        response[:12],
        f"sent {sent / MIB:.0f} MiB; peak RSS {before['VmHWM'] / 1024:.1f} -> "
        f"{after['VmHWM'] / 1024:.1f} MiB",
    )
    assert grown_mib < 16, f"peak RSS grew by {grown_mib:.0f} MiB while reading the body"
    assert sent < 400 * MIB, "the server read the whole body instead of refusing it"
    if response:  # the answer may be lost to a reset when the server closes first
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert proc.poll() is None


async def test_declared_content_length_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    body = b" " * (MAX_BODY + 1)
    r = await client.post("/v1/revocations/session", content=body, headers=AUTH)
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"
    assert r.json()["field"] == "body"


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 8):
            yield b" " * 1024

    r = await client.post("/v1/revocations/session", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    assert str(MAX_BODY) in r.json()["message"]


def _session(**extra: object) -> dict[str, object]:
    subject = Subject(id="alice", kind=SubjectKind.HUMAN).model_dump(mode="json", exclude_none=True)
    return {"subject": subject, "session_id": "s-1", **extra}


@pytest.mark.parametrize("value", ["1e12", "1e308", "99999999999999999999"])
async def test_huge_expires_in_is_422_naming_the_field(
    client: httpx.AsyncClient, value: str
) -> None:
    body = json.dumps(_session()).removesuffix("}") + f', "expires_in": {value}}}'
    r = await client.post("/v1/revocations/session", content=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "expires_in", r.json()


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-Infinity", "1e400"])
async def test_non_finite_numbers_are_not_json(client: httpx.AsyncClient, value: str) -> None:
    body = json.dumps(_session()).removesuffix("}") + f', "expires_in": {value}}}'
    r = await client.post("/v1/revocations/session", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body"
    assert value.lstrip("-") in r.json()["message"]


async def test_expires_in_beyond_the_longest_lifetime_names_expires_in(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/v1/revocations/session", json=_session(expires_in=10 * 365 * 86400), headers=AUTH
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "expires_in"


@pytest.mark.parametrize(("opener", "depth"), [("[", 32_000), ('{"a":', 12_000)])
async def test_deeply_nested_json_is_400_not_500(
    client: httpx.AsyncClient, opener: str, depth: int
) -> None:
    body = opener * depth
    r = await client.post("/v1/revocations/session", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body"
    assert "nested" in r.json()["message"]


async def test_moderately_nested_fields_are_422_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    deep: object = "x"
    for _ in range(30):
        deep = {"a": deep}
    r = await client.post("/v1/revocations/session", json=_session(reason=deep), headers=AUTH)
    assert r.status_code in (400, 422), r.text
    assert r.json()["field"] in ("reason", "body")


async def test_lone_surrogates_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    body = json.dumps(_session()).replace('"s-1"', '"s-\\ud800"')
    r = await client.post("/v1/revocations/session", content=body, headers=AUTH)
    assert r.status_code in (400, 422), r.text
    assert r.json()["field"] == "session_id"


async def test_the_503_body_does_not_show_broker_addresses() -> None:
    settings = _settings(
        bootstrap_servers="127.0.0.1:1,10.77.0.9:9092", connect_timeout=1, delivery_timeout=1
    )
    app = create_app(settings, signer=SigningKey.generate("k"), warm_up=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        r = await c.post("/v1/revocations/session", json=_session(), headers=AUTH)
    assert r.status_code == 503, r.text
    assert r.json()["published"] is False
    assert "127.0.0.1" not in r.text
    assert "10.77.0.9" not in r.text
    assert "9092" not in r.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("services=" + ",".join(f"s{i}" for i in range(101)), "services"),
        ("services=" + "x" * 257, "services"),
        ("wait=nan", "wait"),
        ("wait=-1", "wait"),
        ("wait=1e999", "wait"),
    ],
)
async def test_status_query_parameters_are_bounded(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    r = await client.get(f"/v1/revocations/{uuid.uuid4()}?{query}", headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
