"""A small pubky-style homeserver for the relay's tests: `GET /events/?cursor=<c>&limit=<n>` exactly as SPEC 3.5
says (lines `PUT pubky://...` / `DEL pubky://...`, a last line `cursor: <n>`, an empty body for an empty page,
limit default 100 and clamped to 1000), and nothing else (/healthz is 404, so the relay detects it as pubky).
Events get cursors with holes (as a homeserver's public feed skips private events), on 127.0.0.1 in a thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from engine.names import key_uri


class PubkyFake:
    def __init__(self, step: int = 1):
        self.events: list[tuple[int, str, str, str]] = []  # (cursor, kind, user, path)
        self.next_cursor = 1
        self.step = step  # cursor distance between events: 1 = contiguous, 2 = every other cursor skipped
        self.requests = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                if parts.path != "/events/":
                    self._send(404, b'{"error":"not_found","message":"no such endpoint"}')
                    return
                q = parse_qs(parts.query)
                cursor = int(q.get("cursor", ["0"])[0] or 0)
                limit = min(int(q.get("limit", ["100"])[0]), 1000)
                with fake.lock:
                    fake.requests += 1
                    page = [e for e in fake.events if e[0] > cursor][:limit]
                if not page:
                    self._send(200, b"")
                    return
                lines = [f"{kind} {key_uri(user, path)}" for _c, kind, user, path in page]
                lines.append(f"cursor: {page[-1][0]}")
                self._send(200, "\n".join(lines).encode())

            def _send(self, status, body):
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, kind: str, user: str, path: str) -> int:
        with self.lock:
            cursor = self.next_cursor
            self.events.append((cursor, kind, user, path))
            self.next_cursor += self.step
            return cursor

    def start(self) -> "PubkyFake":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
