"""Locust load test for homestream: signed writers and SSE readers against one server on 127.0.0.1.

- PublisherUser (FastHttpUser): its own ed25519 key; signed PUTs (HS1, engine.http.auth.sign_request) of
  pubky.app-like data: posts (JSON, 0.2-2 KiB), tags and follows (small JSON), a profile overwritten now and then,
  occasional binary files (8-128 KiB), and DELETEs of its own tags. Paths carry time-based ids and a counter, so no
  two writes are signed over the same text: no replay 401.
- SubscriberUser: a raw socket (gevent-cooperative under locust) on `/subscribe?p=*`, parsed here
  (loadtest/ssewire.py: HTTP head, chunked decoding, SSE). Each session lasts 10-40 s and the next one resumes
  with `Last-Event-ID`, so the resume path is under load too. Reported through locust's request events:
    SSE event       one per live event; response_time = publish-to-delivery latency (now - the event's `ts`)
    SSE event (resumed from log)   events appended while this subscriber was disconnected, delivered on resume:
                    their "latency" is their age (mostly the reconnect delay), kept apart from the live figure
    SSE gap         a failure: seqs missing on this subscriber (the checker spans reconnects)
    SSE duplicate   a failure: a seq delivered twice or out of order
    SSE gap-frame   the server said retention dropped history (legit; counted, not a failure)
    SSE connect     time to the response head of each session
  `*` matches every public event and the publishers write only public paths, so on a server used by this run only,
  every seq after a subscriber's first one must arrive. Run it against a fresh server (see loadtest/README.md).

Tunables (environment): HS_PUBLISHERS (default 20), HS_SUBSCRIBERS (10), HS_WRITE_RATE per publisher (10/s),
HS_FILE_SHARE (0.02: share of writes that are binary files).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from urllib.parse import urlsplit

import nacl.signing
from locust import User, between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

from engine.http.auth import sign_request
from engine.names import encode_user

try:
    from loadtest.ssewire import SeqChecker, Stream, crockford_seq, crockford_id
except ImportError:  # run as `locust -f loadtest/locustfile.py` without the repo root on sys.path
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from loadtest.ssewire import SeqChecker, Stream, crockford_seq, crockford_id

PUBLISHERS = int(os.environ.get("HS_PUBLISHERS", "20"))
SUBSCRIBERS = int(os.environ.get("HS_SUBSCRIBERS", "10"))
WRITE_RATE = float(os.environ.get("HS_WRITE_RATE", "10"))
FILE_SHARE = float(os.environ.get("HS_FILE_SHARE", "0.02"))
WORDS = ("pubky", "homeserver", "stream", "event", "key", "sync", "tag", "post", "relay", "feed", "bloom", "seq")


def _text(n: int) -> str:
    out, size = [], 0
    while size < n:
        w = random.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


class PublisherUser(FastHttpUser):
    fixed_count = PUBLISHERS
    wait_time = constant_throughput(WRITE_RATE)

    def on_start(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.user = encode_user(bytes(self.key.verify_key))
        self.counter = 0
        self.tags: list[str] = []

    def _id(self) -> str:
        # pubky.app-like time ids (13 Crockford chars of microseconds), unique per publisher by a counter
        self.counter += 1
        return crockford_id(time.time_ns() // 1000 * 64 + self.counter % 64)

    def _signed(self, method: str, path: str, body: bytes, name: str, ctype: str) -> None:
        # every signed text differs (time-based paths, or a body with a counter), so signing with the current
        # second is never a replay (moving the timestamp on would drift past the 300 s skew window)
        ts = int(time.time())
        full = f"/{self.user}{path}"
        headers = {"Authorization": sign_request(self.key, method, full, body, ts)}
        if body:
            headers["Content-Type"] = ctype
        with self.client.request(method, full, data=body if body else None, headers=headers, name=name,
                                 catch_response=True) as resp:
            if resp.status_code not in (201, 204):
                resp.failure(f"{resp.status_code}: {resp.text[:200] if resp.text else ''}")
            elif "event-id" not in {h.lower() for h in resp.headers}:
                resp.failure("no Event-Id header")

    @task(10)
    def post(self) -> None:
        body = json.dumps({"content": _text(random.randint(200, 2000)), "kind": "short",
                           "parent": None, "embed": None, "attachments": []}).encode()
        self._signed("PUT", f"/pub/pubky.app/posts/{self._id()}", body, "PUT post", "application/json")

    @task(4)
    def tag(self) -> None:
        tid = self._id()
        body = json.dumps({"uri": f"pubky://{self.user}/pub/pubky.app/posts/{self._id()}",
                           "label": random.choice(WORDS), "created_at": int(time.time() * 1000)}).encode()
        self._signed("PUT", f"/pub/pubky.app/tags/{tid}", body, "PUT tag", "application/json")
        self.tags.append(tid)

    @task(2)
    def follow(self) -> None:
        other = encode_user(os.urandom(32))
        body = json.dumps({"created_at": int(time.time() * 1000)}).encode()
        self._signed("PUT", f"/pub/pubky.app/follows/{other}", body, "PUT follow", "application/json")

    @task(1)
    def profile(self) -> None:
        body = json.dumps({"name": f"user {self.user[:8]}", "bio": _text(random.randint(20, 160)),
                           "image": None, "links": [], "status": _text(12), "v": self.counter}).encode()
        self._signed("PUT", "/pub/pubky.app/profile.json", body, "PUT profile", "application/json")

    @task(1)
    def untag(self) -> None:
        if self.tags:
            tid = self.tags.pop(random.randrange(len(self.tags)))
            self._signed("DELETE", f"/pub/pubky.app/tags/{tid}", b"", "DELETE tag", "")

    @task(1)
    def file(self) -> None:
        if random.random() < FILE_SHARE * 19:  # this task is 1/19 of the weight: FILE_SHARE of all writes
            self._signed("PUT", f"/pub/pubky.app/files/{self._id()}", os.urandom(random.randint(8, 128) * 1024),
                         "PUT file", "application/octet-stream")


def _fire(name: str, response_time: float, length: int = 0, exception: Exception | None = None) -> None:
    events.request.fire(request_type="SSE", name=name, response_time=response_time, response_length=length,
                        exception=exception, context={})


class SseProblem(Exception):
    pass


class SubscriberUser(User):
    fixed_count = SUBSCRIBERS
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        u = urlsplit(self.host or "http://127.0.0.1:6286")
        self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        self.checker = SeqChecker()
        self.last_id: str | None = None

    @task
    def session(self) -> None:
        deadline = time.time() + random.uniform(10, 40)
        t0 = time.time()
        self.session_start_ms = t0 * 1000
        head = "GET /subscribe?p=* HTTP/1.1\r\nHost: loadtest\r\nAccept: text/event-stream\r\n"
        if self.last_id:
            head += f"Last-Event-ID: {self.last_id}\r\n"
        try:
            sock = socket.create_connection(self.addr, timeout=5)
        except OSError as exc:
            _fire("connect", (time.time() - t0) * 1000, exception=exc)
            return
        stream = Stream()
        try:
            sock.sendall((head + "\r\n").encode())
            sock.settimeout(1.0)
            connected = False
            while time.time() < deadline:
                try:
                    data = sock.recv(1 << 16)
                except socket.timeout:
                    continue
                if not data:
                    break
                evs = stream.feed(data)
                if not connected and stream.started:
                    connected = True
                    _fire("connect", (time.time() - t0) * 1000)
                for ev in evs:
                    self._event(ev)
                if stream.finished:
                    break
        except (OSError, ValueError) as exc:
            _fire("connect" if not stream.started else "stream", (time.time() - t0) * 1000, exception=exc)
        finally:
            sock.close()

    def _event(self, ev) -> None:
        now = time.time() * 1000
        if ev.event in ("PUT", "DEL"):
            data = ev.json()
            seq = data["seq"]
            if ev.id and crockford_seq(ev.id) != seq:
                _fire("id-mismatch", 0, exception=SseProblem(f"id {ev.id} but seq {seq}"))
            problems = self.checker.observe(seq)
            for p in problems:
                _fire("duplicate" if "duplicate" in p else "gap", 0, exception=SseProblem(p))
            # an event appended before this session started was missed while disconnected and comes from the
            # log on resume: its age is the reconnect delay, not the fan-out latency, so it is reported apart
            name = "event" if data["ts"] >= self.session_start_ms - 1 else "event (resumed from log)"
            _fire(name, max(0.0, now - data["ts"]), len(ev.data))
            self.last_id = ev.id
        elif ev.event == "gap":
            d = ev.json()
            for p in self.checker.gap(d["from"], d["to"]):
                _fire("gap", 0, exception=SseProblem(p))
            _fire("gap-frame", 0, d["to"] - d["from"] + 1)
        elif ev.event == "end":
            _fire("end", 0)
