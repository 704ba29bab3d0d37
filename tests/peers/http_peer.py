#!/usr/bin/python3
"""An HTTP(S) server for the connector tests: it plays an internal API, an
OAuth2 token endpoint and a misbehaving peer, on 127.0.0.1 at a free port.

Endpoints (any method unless said):
  /echo            200, JSON of what came: method, path, query, headers
                   (lower-case names), body (text), client certificate CN
  /status/N        status N with {"error": "status N"} (no body for 204/304)
  /token           POST: OAuth2 client-credentials grant; the client
                   authenticates with Basic (--oauth ID:SECRET); issues tok-1,
                   tok-2, ... valid for --token-ttl seconds
  /protected       200 {"ok": true, "token": T} with a valid bearer token T,
                   else 401
  /revoke          POST: every issued token stops being valid
  /basic           200 {"user": U} with Basic credentials --basic U:P, else 401
  /stats           {"tokens": issued, "connections": accepted, "requests": n,
                   "hanging": requests to /hang so far, "gated": to /gate}
  /text, /binary   text/plain UTF-8; application/octet-stream bytes 0..255
  /badjson         application/json that is not JSON
  /redirect?to=U   302 to U
  /huge?bytes=N    200 with N bytes (chunked=1: without Content-Length)
  /garbage         bytes that are not HTTP, then close
  /truncated       Content-Length 1000, 10 bytes, then close
  /hang            reads the request and never answers
  /gate            held until /open is called, then 200 {"gated": n} (the
                   number of requests held so far); counted in /stats as
                   "gated"
  /open            200; every /gate request held, and every later one, goes

The port goes to --port-file once the server listens. With --cert/--key it
speaks TLS; with --client-ca it also demands a client certificate signed by
that CA.
"""
import argparse
import base64
import json
import os
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"tokens": 0, "connections": 0, "requests": 0, "hanging": 0, "gated": 0}
VALID = set()
LOCK = threading.Lock()
STOP = threading.Event()
OPEN = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "outpost-test-peer"

    def setup(self):
        super().setup()
        with LOCK:
            STATE["connections"] += 1

    def log_message(self, fmt, *args):
        sys.stderr.write("peer: " + (fmt % args) + "\n")

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def basic(self):
        h = self.headers.get("Authorization") or ""
        if not h.startswith("Basic "):
            return None
        try:
            return base64.b64decode(h[6:], validate=True).decode()
        except ValueError:
            return None

    def handle_any(self):
        with LOCK:
            STATE["requests"] += 1
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        path = u.path
        data = self.body()
        if path == "/echo":
            cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
            cn = None
            for rdn in (cert or {}).get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
            self.reply(200, {
                "method": self.command,
                "path": path,
                "query": u.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": data.decode("utf-8", "replace"),
                "clientCert": cn,
            })
        elif path.startswith("/status/"):
            n = int(path[8:])
            self.reply(n, {"error": "status %d" % n},
                       headers=[("Retry-After", "1")] if n in (429, 503) else ())
        elif path == "/token":
            want = self.server.oauth
            form = urllib.parse.parse_qs(data.decode())
            pair = self.basic()
            if pair is not None:
                i, _, s = pair.partition(":")
                pair = urllib.parse.unquote(i) + ":" + urllib.parse.unquote(s)
            if self.command != "POST" or pair != want:
                self.reply(401, {"error": "invalid_client",
                                 "error_description": "client authentication failed"})
            elif form.get("grant_type") != ["client_credentials"]:
                self.reply(400, {"error": "unsupported_grant_type"})
            else:
                with LOCK:
                    STATE["tokens"] += 1
                    tok = "tok-%d" % STATE["tokens"]
                    VALID.add(tok)
                self.reply(200, {"access_token": tok, "token_type": "Bearer",
                                 "expires_in": self.server.ttl,
                                 "scope": " ".join(form.get("scope", []))})
        elif path == "/protected":
            h = self.headers.get("Authorization") or ""
            tok = h[7:] if h.startswith("Bearer ") else None
            with LOCK:
                ok = tok in VALID
            if ok:
                self.reply(200, {"ok": True, "token": tok})
            else:
                self.reply(401, {"error": "invalid_token"},
                           headers=[("WWW-Authenticate", "Bearer")])
        elif path == "/revoke":
            with LOCK:
                VALID.clear()
            self.reply(204)
        elif path == "/basic":
            pair = self.basic()
            if pair is not None and pair == self.server.basic:
                self.reply(200, {"user": pair.partition(":")[0]})
            else:
                self.reply(401, {"error": "bad credentials"},
                           headers=[("WWW-Authenticate", 'Basic realm="peer"')])
        elif path == "/stats":
            with LOCK:
                self.reply(200, dict(STATE))
        elif path == "/text":
            self.reply(200, "h\u00e9llo, world".encode(), "text/plain; charset=utf-8")
        elif path == "/binary":
            self.reply(200, bytes(range(256)), "application/octet-stream")
        elif path == "/badjson":
            self.reply(200, b'{"a": ', "application/json")
        elif path == "/redirect":
            self.reply(302, b"", "text/plain", headers=[("Location", q["to"][0])])
        elif path == "/huge":
            n = int(q.get("bytes", ["1048576"])[0])
            chunked = q.get("chunked", ["0"])[0] == "1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * 65536
            try:
                while n > 0:
                    k = min(n, len(block))
                    if chunked:
                        self.wfile.write(b"%x\r\n" % k + block[:k] + b"\r\n")
                    else:
                        self.wfile.write(block[:k])
                    n -= k
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client gave up: that is the point
        elif path == "/garbage":
            self.wfile.write(b"SSH-2.0-not-http \x00\xff\r\n\r\n")
            self.close_connection = True
        elif path == "/truncated":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 1000\r\n\r\n0123456789")
            self.close_connection = True
        elif path == "/gate":
            with LOCK:
                STATE["gated"] += 1
                n = STATE["gated"]
            OPEN.wait(600)
            self.reply(200, {"gated": n})
        elif path == "/open":
            OPEN.set()
            self.reply(200, {"open": True})
        elif path == "/hang":
            with LOCK:
                STATE["hanging"] += 1
            STOP.wait(600)
            self.close_connection = True
        else:
            self.reply(404, {"error": "no such path"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--oauth", default="client:secret")
    ap.add_argument("--basic", default="user:pass")
    ap.add_argument("--token-ttl", type=int, default=3600)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.oauth, srv.basic, srv.ttl = a.oauth, a.basic, a.token_ttl
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    try:
        srv.serve_forever()
    finally:
        STOP.set()


if __name__ == "__main__":
    main()
