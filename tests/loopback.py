"""A loopback HTTP server for download tests: serves in-memory files, honours ``Range: bytes=N-`` and can
drop the connection part-way through a file (the tests have no internet)."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Served:
    """What the server serves and what it saw: ``files`` by path, ``drop_after`` bytes per path (the
    connection closes after that many bytes of the body), the ``Range`` header of every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    ranges: list[str | None] = field(default_factory=list)
    #: Answer every request with the whole file (a server without range support).
    ignore_range: bool = False
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.lstrip("/")
            rng = self.headers.get("Range")
            served.ranges.append(rng)
            if path not in served.files:
                self.send_error(404)
                return
            data = served.files[path]
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            start = int(m.group(1)) if m and not served.ignore_range else 0
            if start >= len(data) and start:
                self.send_error(416)
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            body = data[start:]
            drop = served.drop_after.pop(path, None)  # drops once: the rerun gets the rest
            self.wfile.write(body[:drop] if drop is not None else body)
            if drop is not None:
                self.close_connection = True

    return Handler


@contextmanager
def serve(files: dict[str, bytes] | None = None) -> Iterator[Served]:
    """Serve ``files`` on 127.0.0.1 (a free port) in a thread for the duration of the block."""
    served = Served(dict(files or {}))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
