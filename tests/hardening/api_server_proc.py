"""A real uvicorn serving the producer API in its own process, for memory measurements.

Run as ``python tests/hardening/api_server_proc.py TOKEN``: prints the port on one
line, then serves on 127.0.0.1 until killed. Kafka is never contacted (no warm-up,
and the requests the tests send are refused before anything is published).
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from pydantic import SecretStr

from producer.api import create_app
from producer.settings import ApiToken, ProducerSettings
from schemas import SigningKey


def main() -> None:
    token = sys.argv[1]
    settings = ProducerSettings(
        bootstrap_servers="127.0.0.1:1",
        api_tokens=[ApiToken(name="iam", token=SecretStr(token), scopes=frozenset({"revoke:*"}))],
    )
    app = create_app(settings, signer=SigningKey.generate("k"), warm_up=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
