#!/usr/bin/env python3
"""faultserver.py — a small HTTP object server on 127.0.0.1 that misbehaves on request.

    faultserver.py PORTFILE [LIFETIME_S] [--sigv4 KEYID:SECRET]

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

POST /_clear drops the faults still armed. With --sigv4 it is also a small S3 endpoint (path style, /BUCKET/KEY): every
object request must carry an AWS Signature Version 4 that this server computes
again from the request (its own code, after AWS's documentation, not libcurl's)
with the given key id and secret, and a body whose SHA-256 is what
x-amz-content-sha256 says; anything else is 403 SignatureDoesNotMatch. GET
/BUCKET?list-type=2&prefix=P answers ListObjectsV2 pages of two keys at most
(continuation-token: the last key of the page before).

GET /_stats answers "METHOD COUNT" lines: the object requests seen by method
(faulty ones included). POST /_reset clears the objects, faults and counts.
"""
import hashlib
import hmac
import http.server
import os
import re
import sys
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

sigv4 = None  # (keyid, secret) with --sigv4
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


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def check_sigv4(h, body):
    """None when h's request is signed with sigv4's secret, else why not."""
    auth = h.headers.get("Authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
                 r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$", auth)
    if not m:
        return "no SigV4 Authorization"
    keyid, date, region, service, signed, sig = m.groups()
    if keyid != sigv4[0]:
        return "unknown key id"
    payload = h.headers.get("x-amz-content-sha256")
    if payload is None:
        return "no x-amz-content-sha256"
    if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 is not the body's"
    names = signed.split(";")
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in names:
            return need + " not signed"
    if "x-amz-security-token" in h.headers and "x-amz-security-token" not in names:
        return "x-amz-security-token not signed"
    path, _, query = h.path.partition("?")
    uri = urllib.parse.quote(urllib.parse.unquote(path), safe="/-_.~")
    q = urllib.parse.parse_qsl(query, keep_blank_values=True)
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")
    cq = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(q))
    ch = "".join(f"{n}:{' '.join((h.headers.get(n) or '').split())}\n" for n in names)
    creq = "\n".join([h.command, uri, cq, ch, signed, payload])
    sts = "\n".join(["AWS4-HMAC-SHA256", h.headers.get("x-amz-date", ""), f"{date}/{region}/{service}/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = _hmac(("AWS4" + sigv4[1]).encode(), date)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    if hmac.new(k, sts.encode(), hashlib.sha256).hexdigest() != sig:
        return "signature mismatch"
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

    def denied(self, body=b""):
        """With --sigv4: answer 403 and True unless the request is signed right."""
        if sigv4 is None:
            return False
        why = check_sigv4(self, body)
        if why is None:
            return False
        self.answer(403, f"<Error><Code>SignatureDoesNotMatch</Code><Message>{why}</Message></Error>".encode())
        return True

    def listing(self, bucket, query):
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        prefix, after = q.get("prefix", ""), q.get("continuation-token", "")
        base = "/" + bucket + "/"
        with lock:
            keys = sorted(k[len(base):] for k in objects if k.startswith(base + prefix))
            sizes = {k: len(objects[base + k]) for k in keys}
        keys = [k for k in keys if k > after]
        page, more = keys[:2], len(keys) > 2
        xml = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>",
               f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
               f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]
        for k in page:
            xml.append(f"<Contents><Key>{escape(k)}</Key><LastModified>2026-12-07T21:00:00.000Z</LastModified>"
                       f"<Size>{sizes[k]}</Size></Contents>")
        if more:
            xml.append(f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>")
        xml.append("</ListBucketResult>")
        self.answer(200, "".join(xml).encode())

    def do_PUT(self):
        data = self.body()
        if self.denied(data):
            return
        kind = take_fault("PUT", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind), b"<Error><Code>SlowDown</Code></Error>")
        with lock:
            objects[self.path] = data
        self.answer(200)

    def do_DELETE(self):
        if self.denied():
            return
        kind = take_fault("DELETE", self.path)
        if kind in ("500", "503"):
            return self.answer(int(kind))
        with lock:
            had = objects.pop(self.path, None) is not None
        self.answer(204 if had else 404)

    def do_HEAD(self):
        if self.path.startswith("/_"):
            return self.answer(404)
        if self.denied():
            return
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
        if self.denied():
            return
        path, _, query = self.path.partition("?")
        if sigv4 is not None and "list-type=2" in query and path.count("/") == 1:
            return self.listing(path.strip("/"), query)
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
    global sigv4
    args = sys.argv[1:]
    if "--sigv4" in args:
        i = args.index("--sigv4")
        sigv4 = tuple(args[i + 1].split(":", 1))
        del args[i:i + 2]
    portfile = args[0]
    lifetime = float(args[1]) if len(args) > 1 else 120
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
