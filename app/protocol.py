"""uvicorn's httptools HTTP/1.1 protocol with the three bounds it lacks: header size, request time, connections.

Run with ``uvicorn --http app.protocol:BoundedHttpToolsProtocol`` (`make serve`, the Dockerfile, the tests'
server). Plain uvicorn with httptools:

- accepts a request head of any size (an 8 MB header block was held in memory; h11's limit does not apply);
- has no header or body timeout: the keep-alive timer starts only after a response, so a connection that
  never finishes its first request (slowloris) or never sends a byte stays open for ever;
- accepts connections without limit: ``--limit-concurrency`` answers 503 only once a request arrives, so idle
  sockets pile up until the process runs out of file descriptors, and nothing is logged.

Here a request head larger than ``RECSYS_MAX_HEADER_BYTES`` gets 431, a request not fully received
``RECSYS_REQUEST_TIMEOUT`` seconds after its connection opened (or after the previous response) gets 408, and
a connection past ``--limit-concurrency`` gets 503, each followed by closing the connection and one warning
line. A reverse proxy in front should still bound these itself (docs/service.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings

log = logging.getLogger(__name__)
WARN_EVERY = 10.0  # seconds between two warnings of one kind, so a flood does not flood the log too


class _Throttled:
    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -WARN_EVERY) >= WARN_EVERY:
            extra = self.suppressed.pop(kind, 0)
            log.warning("%s%s", message, f" ({extra} more since the last such line)" if extra else "")
            self.last[kind] = now
        else:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1


_warnings = _Throttled()


def _response(status: int, reason: str, detail: str) -> bytes:
    body = ('{"detail":"' + detail + '"}').encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` plus a header-size limit, a per-request receive deadline and a connection cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_header_bytes = settings.max_header_bytes
        self.request_timeout = settings.request_timeout
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far, to find a blank line split across two reads
        self._in_head = True  # between requests or inside a request head
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            _warnings.warning("connections", f"connection refused: over --limit-concurrency={self.limit_concurrency}")
            self._refuse(503, "Service Unavailable", "too many connections; try again later")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self.transport.is_closing():
            self._arm()  # the first byte after a keep-alive pause starts the next request's clock
        if self._in_head:
            # Counted before the parser sees the bytes, up to the blank line that ends the head when this chunk
            # holds it: a whole oversized head can arrive in one read (up to 256 KiB), and a body is no head.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += end + 4 - len(self._tail) if end >= 0 else len(data)
            self._tail = window[-3:]
            if self._head_bytes > self.max_header_bytes:
                _warnings.warning("headers", f"request head over {self.max_header_bytes} bytes refused (431)")
                self._refuse(431, "Request Header Fields Too Large", "request head too large")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes, self._tail = 0, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()  # fully received: how long the app takes is not the client's fault
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._in_head = True
        self._head_bytes, self._tail = 0, b""
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle time until the next byte

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        _warnings.warning("timeout", f"request not received within {self.request_timeout:g} s; connection closed")
        if self.cycle is None or not self.cycle.response_started:
            self._refuse(408, "Request Timeout", "request not received in time")
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._disarm()
        if self.cycle is not None:
            self.cycle.disconnected = True  # an app still reading this request's body sees http.disconnect
            self.cycle.message_event.set()
        self.transport.write(_response(status, reason, detail))
        self.transport.close()
