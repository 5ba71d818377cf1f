#!/usr/bin/python3
"""A tiny private HTTP server for the runbook.http tests (never the lab's API).

usage: fixture_httpd.py ADDRESS PORT [silent|full]
  PORT 0 picks a free port; "ready PORT" is printed on stdout once listening.
  (no mode)  answers the endpoints below
  silent     accepts TCP connections and never answers (a hung server)
  full       listens with a full accept queue and never accepts: new SYNs are dropped, so a
             client's TCP connect itself times out

  GET|POST|PUT|PATCH|DELETE /echo       -> 200 JSON {method, path, headers{lowercased}, body}
  any /status/NNN                       -> NNN with JSON {"error": "status NNN from fixture"}
  GET /slow/SECONDS                     -> answers 200 after sleeping
  GET /big/BYTES                        -> 200 with BYTES bytes of "x"
  GET /redirect                         -> 302 Location: /echo
  GET /text                             -> 200 text/plain "plain text"
  GET /dup                              -> 200 with two X-Dup headers
  GET /log                              -> 200 JSON list of "METHOD PATH" received so far (not /log)
Exits by itself after 300 s (a test that dies cannot leave it behind for long).
Dependencies: python3 standard library only.
"""
import http.server
import json
import socket
import sys
import threading
import time

ADDR, PORT = sys.argv[1], int(sys.argv[2])
MODE = sys.argv[3] if len(sys.argv) > 3 else "serve"


def watchdog():
    time.sleep(300)
    import os
    os._exit(0)


RECEIVED = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="application/json", extra=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path
        if p == "/log":
            return self.reply(200, RECEIVED)
        RECEIVED.append("%s %s" % (self.command, p))
        if p == "/echo" or p.startswith("/echo/") or p.startswith("/echo?"):
            return self.reply(200, {"method": self.command, "path": p,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body.decode("utf-8", "replace")})
        if p.startswith("/status/"):
            code = int(p.split("/")[2])
            return self.reply(code, {"error": "status %d from fixture" % code})
        if p.startswith("/slow/"):
            time.sleep(float(p.split("/")[2]))
            return self.reply(200, {"slept": True})
        if p.startswith("/big/"):
            return self.reply(200, b"x" * int(p.split("/")[2]), "application/octet-stream")
        if p == "/redirect":
            return self.reply(302, {"moved": True}, extra=[("Location", "/echo")])
        if p == "/text":
            return self.reply(200, b"plain text", "text/plain")
        if p == "/dup":
            return self.reply(200, {}, extra=[("X-Dup", "one"), ("X-Dup", "two")])
        return self.reply(404, {"error": "no such fixture endpoint"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


def main():
    threading.Thread(target=watchdog, daemon=True).start()
    if MODE in ("silent", "full"):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ADDR, PORT))
        port = s.getsockname()[1]
        held = []
        if MODE == "full":
            s.listen(0)
            for _ in range(4):   # fill the queue; their handshakes complete, later SYNs drop
                f = socket.socket()
                f.setblocking(False)
                try:
                    f.connect((ADDR, port))
                except BlockingIOError:
                    pass
                held.append(f)
            time.sleep(0.2)
            print("ready %d" % port, flush=True)
            time.sleep(300)
            return
        s.listen(16)
        print("ready %d" % port, flush=True)
        while True:
            c, _ = s.accept()
            held.append(c)
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((ADDR, PORT), Handler)
    srv.daemon_threads = True
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


main()
