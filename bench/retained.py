"""Retained revocations for the bootstrap (replay) measurement: sign in Python, load with Java.

``python -m bench.retained --first A --last B --key-file K --out FILE [--batch K]``
is one signing worker (with ``--batch``, one batch record per K events): it builds
the events ``A..B-1`` (45 % session, 45 % token revocations, 10 % subject
offboardings, all unique, all expiring in 4 h), signs each exactly as the
producer does (:func:`schemas.encode` with the run's key), and writes
``<subject id>\\t<JWS>`` lines (a compact JWS never contains a tab or a newline).
The harness runs one worker per core, then loads the lines into each topic with
Kafka's own ``org.apache.kafka.tools.ConsoleProducer`` (``parse.key=true``; the
Java client's default partitioner is murmur2 on the key, as kafka-python's is, so
a subject's events land where the producer would put them).

Why not kafka-python for loading: the Java client loads a million 0.5 KB records
in seconds, several times faster than kafka-python's producer (and without the
optional ``crc32c`` extension, which kafka-python needs for fast record CRCs, it
would take minutes). The bytes on the topic are the same either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas import (
    Envelope,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
    encode,
    encode_batch,
)
from schemas.batch import MAX_BATCH_EVENTS

__all__ = ["CONSOLE_PRODUCER", "load_topic", "main", "retained_event"]

CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"


def retained_event(
    i: int, expires: datetime, now: datetime
) -> SessionRevoked | TokenRevoked | SubjectOffboarded:
    kind = i % 20
    if kind < 9:
        return SessionRevoked(
            subject=Subject(id=f"r-user-{i % 50_000}", kind=SubjectKind.HUMAN),
            session_id=f"r-s-{i}",
            expires_at=expires,
        )
    if kind < 18:
        return TokenRevoked(
            subject=Subject(id=f"r-user-{i % 50_000}", kind=SubjectKind.HUMAN),
            jti=f"r-j-{i}",
            expires_at=expires,
        )
    return SubjectOffboarded(
        subject=Subject(id=f"r-gone-{i}", kind=SubjectKind.SERVICE_ACCOUNT),
        not_before=now,
        expires_at=expires,
    )


def _lines(files: Sequence[Path], limit: int) -> Iterator[bytes]:
    """The first ``limit`` lines of ``files``, in order."""
    left = limit
    for path in files:
        with path.open("rb") as fh:
            for line in fh:
                if left <= 0:
                    return
                yield line
                left -= 1


def load_topic(
    java: str,
    jar_dir: Path,
    bootstrap: str,
    topic: str,
    files: Sequence[Path],
    count: int,
    *,
    timeout: float,
    log_path: Path,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> dict[str, Any]:
    """Pipe the first ``count`` lines of ``files`` into ConsoleProducer for ``topic``.

    The JVM is appended to ``started`` as soon as it runs, so a caller running several
    loads in threads can kill them all when it is interrupted.
    """
    cmd = [
        java, "-Xmx512m", "-cp", f"{jar_dir}/*", CONSOLE_PRODUCER,
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--reader-property", "parse.key=true",
        "--request-required-acks", "1",
        "--batch-size", str(512 * 1024),
        "--timeout", "20",
        "--max-memory-bytes", str(128 << 20),
        "--request-timeout-ms", "30000",
    ]  # fmt: skip
    begin = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if started is not None:
            started.append(proc)
        failure: list[BaseException] = []

        def feed() -> None:
            assert proc.stdin is not None
            try:
                buffer: list[bytes] = []
                size = 0
                for line in _lines(files, count):
                    buffer.append(line)
                    size += len(line)
                    if size >= 1 << 20:
                        proc.stdin.write(b"".join(buffer))
                        buffer, size = [], 0
                if buffer:
                    proc.stdin.write(b"".join(buffer))
            except BaseException as exc:  # a broken pipe means the JVM died: report it
                failure.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            code = proc.wait(timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        feeder.join(10)
    if code != 0 or failure:
        tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
        raise RuntimeError(f"ConsoleProducer for {topic} failed (exit {code}): {tail}")
    return {"topic": topic, "records": count, "elapsed_s": round(time.monotonic() - begin, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retained")
    parser.add_argument("--key-file", required=True, help="private JWK of the signing key")
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--last", type=int, required=True, help="exclusive")
    parser.add_argument("--out", required=True, help="file for the key<TAB>value lines")
    parser.add_argument(
        "--batch", type=int, default=1,
        help="events per record: above 1, batch records (one signature over that many "
        "events, schemas.encode_batch), as publish_many writes them",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= MAX_BATCH_EVENTS:
        parser.error(f"--batch must be between 1 and {MAX_BATCH_EVENTS}")
    signer = SigningKey.from_file(args.key_file)
    begin = time.monotonic()
    now = datetime.now(UTC)
    expires = now + timedelta(hours=4)
    out = Path(args.out)
    written = 0
    with out.open("wb", buffering=1 << 20) as fh:
        for start in range(args.first, args.last, args.batch):
            envs = [Envelope.wrap(retained_event(i, expires, now), issuer="bench-retained")
                    for i in range(start, min(start + args.batch, args.last))]
            key = envs[0].partition_key or b""
            value = encode(envs[0], signer) if args.batch == 1 else encode_batch(envs, signer)
            fh.write(key + b"\t" + value + b"\n")
            written += 1
    print(
        json.dumps(
            {
                "first": args.first,
                "last": args.last,
                "lines": written,
                "elapsed_s": round(time.monotonic() - begin, 3),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
