#!/usr/bin/env python3
"""faultserver.py — a small HTTP object server on 127.0.0.1 that misbehaves on request.

    faultserver.py PORTFILE [LIFETIME_S]

Listens on a free port of 127.0.0.1, writes the port to PORTFILE, and serves
objects kept in memory: PUT stores the body, GET (with Range: bytes=A- or A-B)
and HEAD read, DELETE removes; a missing object is 404. It exits after
LIFETIME_S seconds (default 120) whatever happens, so a test that dies cannot
leave it running for long.

Faults are armed by the test with  POST /_fault  and the body "KIND COUNT [MATCH]":
the next COUNT object requests (GET only, unless said; with MATCH, only those whose
path holds it) misbehave:

    500, 503   answer that status (any method)
    drop       send the headers and half the body, then close the connection
    stall      send nothing for 5 s (past the client's timeout), then close
    short      announce 100 bytes more than the body, send the body, close (a wrong Content-Length)
    trunc      announce and send only the first half (a body that looks whole)
    corrupt    send the whole length with one byte inverted in the middle
    ignorerange  answer a ranged GET with the whole object (200)

POST /_clear drops the faults still armed. GET /_stats answers "METHOD COUNT" lines: the object requests seen by method
(faulty ones included). POST /_reset clears the objects, faults and counts.
"""
import http.server
import os
import sys
import threading
import time

objects = {}
faults = []  # [kind, count]
counts = {}
lock = threading.Lock()


def take_fault(method, path):
    with lock:
        counts[method] = counts.get(method, 0) + 1
        for f in faults:
            kind, n, match = f
            if kind not in ("500", "503") and method != "GET":
                continue
            if match and match not in path:
                continue
            f[1] -= 1
            if f[1] <= 0:
                faults.remove(f)
            return kind
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def control(self):
        if self.path == "/_fault":
            words = self.body().decode().split()
            with lock:
                faults.append([words[0], int(words[1]), words[2] if len(words) > 2 else ""])
            return self.answer(200)
        if self.path == "/_clear":
            self.body()
            with lock:
                faults.clear()
            return self.answer(200)
        if self.path == "/_reset":
            self.body()
            with lock:
                objects.clear()
                faults.clear()
                counts.clear()
            return self.answer(200)
        if self.path == "/_stats":
            with lock:
                text = "".join(f"{k} {v}\n" for k, v in sorted(counts.items()))
            return self.answer(200, text.encode())
        return self.answer(404)

    def do_POST(self):
        self.control()

    def do_PUT(self):
        data = self.body()
        kind = take_fault("PUT", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind), b"<Error><Code>SlowDown</Code></Error>")
        with lock:
            objects[self.path] = data
        self.answer(200)

    def do_DELETE(self):
        kind = take_fault("DELETE", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind))
        with lock:
            had = objects.pop(self.path, None) is not None
        self.answer(204 if had else 404)

    def do_HEAD(self):
        if self.path.startswith("/_"):
            return self.answer(404)
        kind = take_fault("HEAD", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind))
        with lock:
            data = objects.get(self.path)
        if data is None:
            return self.answer(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        if self.path.startswith("/_"):
            return self.control()
        kind = take_fault("GET", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind), b"<Error><Code>InternalError</Code></Error>")
        with lock:
            data = objects.get(self.path)
        if data is None:
            return self.answer(404)
        status, start = 200, 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and kind != "ignorerange":
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = int(b) + 1 if b else len(data)
            if start >= len(data):
                return self.answer(416, headers=[("Content-Range", f"bytes */{len(data)}")])
            data = data[start:min(end, len(data))]
            status = 206
        if kind == "stall":
            time.sleep(5)
            self.close_connection = True
            return
        if kind == "trunc":
            data = data[: len(data) // 2]
        if kind == "corrupt":
            b = bytearray(data)
            b[len(b) // 2] ^= 0xFF
            data = bytes(b)
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) + (100 if kind == "short" else 0)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/*")
        self.end_headers()
        if kind in ("drop", "short"):
            self.wfile.write(data[: len(data) // 2] if kind == "drop" else data)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


def main():
    portfile = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 120
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, portfile)
    threading.Timer(lifetime, lambda: os._exit(0)).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
