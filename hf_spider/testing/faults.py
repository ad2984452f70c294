"""A fault-injecting HTTP proxy: a misbehaving network between the Hub clients and a (local) Hub.

:class:`FaultyProxy` listens on 127.0.0.1 and forwards every request to ``upstream``; a seeded random ``rate``
of the requests meets one of the failures real networks and real Hubs produce:

========================  ==================================================================================
``drop_request``          the connection closes before the request is forwarded (nothing reaches the Hub)
``drop_response``         forwarded, then the connection closes unanswered (the Hub acted; the client never hears)
``delay``                 forwarded after 0.5-2 s (a client with a shorter read timeout times out)
``truncate``              the full ``Content-Length`` but only part of the body, then the connection closes
``error``                 500, 502 or 503 without forwarding
``throttle``              429 with ``Retry-After: 1`` without forwarding
========================  ==================================================================================

It counts the requests and the faults injected per kind. Like any reverse proxy it rewrites the upstream
address to its own in ``Link``/``Location`` headers and JSON bodies, so pagination stays behind it.

    >>> with FaultyProxy(hub.url, rate=0.2, seed=0) as proxy:   # doctest: +SKIP
    ...     subprocess.run(["hf_spider", "scan"], env={**os.environ, "HF_ENDPOINT": proxy.url})
    >>> proxy.injected                                        # doctest: +SKIP
    Counter({'delay': 17, 'error': 15, ...})

From the shell: ``python -m hf_spider.testing.faults http://127.0.0.1:8080 --port 8081 --rate 0.2``.
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..localhub.server import DEFAULT_MAX_BODY, ServerThread, read_body

__all__ = ["KINDS", "FaultyProxy"]

KINDS = ("drop_request", "drop_response", "delay", "truncate", "error", "throttle")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length"}  # request headers the proxy sets itself
_NOT_RETURNED = _HOP_BY_HOP | {"server", "date"}  # answer headers the proxy's own server writes


@dataclass(frozen=True)
class _Fault:
    kind: str
    seconds: float  # delay
    fraction: float  # truncate: share of the body sent
    status: int  # error


class FaultyProxy(ServerThread):
    """Forward to ``upstream``, injecting faults into a seeded random ``rate`` of the requests.

    Args:
        upstream: base URL of the Hub, e.g. ``LocalHub.url``.
        rate: probability that a request meets a fault.
        seed: seeds the choice of requests and faults (in arrival order).
        kinds: the faults to draw from, uniformly (default: all of :data:`KINDS`; HEAD requests skip ``truncate``).
        match: only requests whose ``"METHOD /path?query"`` matches this regex may meet a fault.
        limit: stop injecting after this many faults.
        port: port to listen on (0 picks a free one).
    """

    def __init__(self, upstream: str, *, rate: float = 0.2, seed: int = 0, kinds: tuple[str, ...] = KINDS,
                 match: str | None = None, limit: int | None = None, port: int = 0) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must lie in [0, 1], got {rate}")
        if not kinds or set(kinds) - set(KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        self.upstream = upstream.rstrip("/")
        self.rate, self.kinds, self.limit = rate, tuple(kinds), limit
        self._match = re.compile(match) if match else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._drawn = 0
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self._server = _ProxyServer(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        super().__init__(self._server, "hf_spider-faulty-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _draw(self, method: str, path: str) -> _Fault | None:
        """Count the request and decide its fault (every random number drawn here, in arrival order).

        A HEAD answer has no body to cut, so a HEAD request draws from the other kinds: ``truncate`` then
        lands only where it can happen, and the counts per kind stay what was drawn.
        """
        with self._lock:
            self.requests += 1
            if self._match is not None and not self._match.search(f"{method} {path}"):
                return None
            kinds = self.kinds if method != "HEAD" else tuple(k for k in self.kinds if k != "truncate")
            if not kinds or (self.limit is not None and self._drawn >= self.limit) or self._rng.random() >= self.rate:
                return None
            self._drawn += 1
            return _Fault(self._rng.choice(kinds), self._rng.uniform(0.5, 2.0), self._rng.random(),
                          self._rng.choice((500, 502, 503)))

    def _record(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultyProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up (e.g. on a timeout) is expected here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = read_body(self, limit=DEFAULT_MAX_BODY)
        fault = proxy._draw(self.command, self.path)
        try:
            if fault is None:
                self._reply(*self._forward(body))
            elif fault.kind == "drop_request":
                self._drop(fault.kind)
            elif fault.kind in ("error", "throttle"):
                proxy._record(fault.kind)
                throttled = fault.kind == "throttle"
                self._reply(429 if throttled else fault.status,
                            [("Content-Type", "application/json"), *([("Retry-After", "1")] if throttled else [])],
                            b'{"error": "fault injected by FaultyProxy"}')
            elif fault.kind == "delay":
                proxy._record(fault.kind)
                time.sleep(fault.seconds)
                self._reply(*self._forward(body))
            else:
                status, headers, payload = self._forward(body)
                if fault.kind == "drop_response" or not payload:  # an empty body cannot be cut: drop it instead
                    self._drop("drop_response")
                else:
                    proxy._record(fault.kind)
                    self._reply(status, headers, payload, send=int(fault.fraction * len(payload)))
        except OSError:  # the client went away (e.g. timed out during a delay)
            self.close_connection = True

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """The upstream answer, with the upstream address rewritten to the proxy's."""
        proxy = self.server.proxy
        target = urlsplit(proxy.upstream)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers["Host"] = target.netloc
        if body or self.command in ("POST", "PUT"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in _NOT_RETURNED]
        finally:
            connection.close()
        old, new = proxy.upstream, proxy.url
        answer = [(k, v.replace(old, new) if k.lower() in ("link", "location") else v) for k, v in answer]
        if "json" in response.getheader("Content-Type", ""):
            payload = payload.replace(old.encode(), new.encode())
        if self.command != "HEAD":  # a HEAD answer keeps the length of the body it describes
            answer = [(k, str(len(payload)) if k.lower() == "content-length" else v) for k, v in answer]
        return response.status, answer, payload

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes, *, send: int | None = None) -> None:
        """Answer ``status``; with ``send``, only that many body bytes, then close (a truncated download)."""
        self.send_response(status)
        if not any(k.lower() == "content-length" for k, _ in headers):
            headers = [*headers, ("Content-Length", str(len(payload)))]
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload if send is None else payload[:send])
        self.wfile.flush()
        if send is not None:
            self.close_connection = True

    def _drop(self, kind: str) -> None:
        self.server.proxy._record(kind)
        self.close_connection = True  # the handler returns without a byte: the server closes the socket


def main() -> None:
    parser = argparse.ArgumentParser(description="Forward to a Hub, injecting network faults into some requests.")
    parser.add_argument("upstream", help="the Hub's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--rate", type=float, default=0.2, help="share of requests that meet a fault")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    proxy = FaultyProxy(args.upstream, rate=args.rate, seed=args.seed, port=args.port)
    print(f"Faulty proxy for {proxy.upstream} at {proxy.url} ({args.rate:.0%} of requests): "
          f"export HF_ENDPOINT={proxy.url}")
    try:
        proxy._server.serve_forever()
    except KeyboardInterrupt:
        print(f"{proxy.requests} requests, faults injected: {dict(proxy.injected)}")
    finally:
        proxy._server.server_close()


if __name__ == "__main__":
    main()
