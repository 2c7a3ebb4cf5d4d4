"""A small HTTP server for a metrics port: what the worker's `/metrics` and `/health` and, with
`ROOMS_METRICS_PORT`, the API's `/metrics` are served by, apart from the public port.

The standard library's WSGI server, as prometheus_client's own exporter uses, on a thread of its own:
a stuck event loop cannot answer for itself, and the server still can. What must run on the loop (the
API's request figures, kept without locks) is handed to it by the caller's WSGI app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from common.settings import ENV_PREFIX, SettingsError

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

log = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold the process when it stops


class _SharedPortServer(_ThreadingServer):
    # Each of the API's processes binds the same port; the kernel hands each connection to one of
    # them, and any of them answers for all (PROMETHEUS_MULTIPROC_DIR).
    allow_reuse_port = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not news."""


@contextmanager
def serving(
    app: WSGIApplication, host: str, port: int, *, setting: str, shared: bool = False, what: str = "metrics"
) -> Iterator[int]:
    """Serve `app` on `host:port` while the block runs; yields the port. `shared`: other processes of
    this user may bind the same port. A port that cannot be taken is a SettingsError naming `setting`."""
    server_class = _SharedPortServer if shared else _ThreadingServer
    try:
        server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:  # the port is taken (another process on this host?) or not ours to take
        raise SettingsError(
            f"{ENV_PREFIX}{setting}: cannot listen on {host}:{port} ({exc}); give each its own port, or 0 for none"
        ) from exc
    thread = threading.Thread(target=server.serve_forever, name=f"{what}-port", daemon=True)
    thread.start()
    bound = int(server.server_address[1])
    log.info("%s on http://%s:%d", what, host, bound)
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
