"""The SCIM endpoint in this process, on loopback: for tests, the demo and the benchmark.

:class:`ScimEndpoint` serves exactly what ``revocast serve-api`` serves (the HTTP API with
the SCIM service provider mounted at ``/scim/v2``) with uvicorn in a background thread on
``127.0.0.1`` and a free port, and stops it on exit. Drive it with any SCIM client, e.g.
scim2-client::

    with ScimEndpoint(ProducerSettings.load(...), ScimSettings(clients=[client]),
                      signer=key) as endpoint:
        http = httpx2.Client(base_url=endpoint.scim_url,
                             headers={"Authorization": f"Bearer {token}"})
        scim = SyncSCIMClient(http, provider=build_provider(settings))
        scim.discover()
        user = scim.create(User(user_name="ada", external_id="00u1", active=True))
        scim.replace(user.model_copy(update={"active": False}))   # -> SubjectOffboarded

``warm_up`` (default, as serve-api) connects the publisher and the receipt tracker before the
first request, so the first revocation does not pay for the connection. Guarantees: it
listens on 127.0.0.1 only; ``__enter__`` returns once uvicorn accepts
connections (or raises within ``start_timeout``); ``__exit__`` stops uvicorn, runs the app's
shutdown (closing its Redis connections and publisher) and joins the thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

from producer.ingress.scim.settings import ScimSettings

if TYPE_CHECKING:
    from producer.publisher import RevocationPublisher
    from producer.settings import ProducerSettings
    from schemas import SigningKey

__all__ = ["ScimEndpoint"]


class ScimEndpoint:
    """``revocast serve-api`` (SCIM mounted) on 127.0.0.1 in a thread; see the module doc."""

    def __init__(
        self,
        settings: ProducerSettings,
        scim: ScimSettings,
        *,
        signer: SigningKey | None = None,
        publisher: RevocationPublisher | None = None,
        warm_up: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        import uvicorn

        from producer.api import create_app

        if not scim.all_clients():
            raise ValueError("ScimEndpoint needs at least one SCIM client in its settings")
        self.app = create_app(
            settings, signer=signer, publisher=publisher, warm_up=warm_up, scim=scim
        )
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.scim_url = f"{self.url}/scim/v2"
        self._start_timeout = start_timeout
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"revocast-scim-{self.port}",
            daemon=True,
        )

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the SCIM endpoint did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(15)
        with contextlib.suppress(OSError):
            self._sock.close()
