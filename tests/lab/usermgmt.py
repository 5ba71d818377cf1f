#!/usr/bin/python3
"""User Management API of the mail lab ("dell", http://127.0.0.20:5001).

A small, honest stand-in for the production API the operators' document uses.
It writes the MariaDB database mailserver_usermgmt through the mariadb command
line client (argv lists, no shell); every value reaches SQL as a hex literal,
so nothing a client sends can change a statement. The database credentials
come from a 0600 client option file (--defaults-extra-file), never from the
command line or the environment. Passwords are stored as {SHA512-CRYPT}
hashes and never returned or logged.

Endpoints (JSON in, JSON out):
  GET    /api/health
  GET    /api/domains                      -> [{"id","name"}]
  POST   /api/domains {"name"}             -> 201 {"id","name"} | 409 exists
  GET    /api/users[?domain=NAME]          -> [{"email","domain","enabled","maildir","quota"}]
  GET    /api/users/<email>                -> 200 user | 404
  POST   /api/users {"email","password","domain"[,"quota"]} -> 201 user | 404 domain | 409 exists
  PATCH  /api/users/<email> {"enabled":bool, "quota":int} -> 200 user | 404
Dependencies: Debian's python3 (stdlib only) and mariadb-client.
"""
import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import urllib.parse
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # Debian 12's python3.11 still ships it; SHA512-CRYPT as Dovecot expects

LISTEN = os.environ.get("USERMGMT_LISTEN", "127.0.0.20")
PORT = int(os.environ.get("USERMGMT_PORT", "5001"))
DEFAULTS = os.environ.get("USERMGMT_DB_DEFAULTS", "/run/secrets/usermgmt.cnf")
DATABASE = os.environ.get("USERMGMT_DB", "mailserver_usermgmt")
DEFAULT_QUOTA = int(os.environ.get("USERMGMT_DEFAULT_QUOTA", str(50 * 1024 * 1024)))

DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
LOCAL_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


class DBError(Exception):
    pass


def lit(value):
    """A SQL string literal that cannot be anything but data."""
    return "CONVERT(X'%s' USING utf8mb4)" % str(value).encode("utf-8").hex()


def sql(statement):
    """Run one statement batch; return rows as lists of strings (NULL -> None)."""
    argv = ["mariadb", "--defaults-extra-file=" + DEFAULTS, "--batch", "--raw",
            "--skip-column-names", "--connect-timeout=5", DATABASE]
    try:
        p = subprocess.run(argv, input=statement.encode("utf-8"), capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        raise DBError("database timeout")
    if p.returncode != 0:
        raise DBError(p.stderr.decode("utf-8", "replace").strip() or "database error")
    rows = []
    for line in p.stdout.decode("utf-8").splitlines():
        rows.append([None if f == "NULL" else f for f in line.split("\t")])
    return rows


USER_COLS = "u.email, d.name, u.enabled, u.maildir, u.quota"


def user_obj(row):
    return {"email": row[0], "domain": row[1], "enabled": row[2] == "1",
            "maildir": row[3], "quota": int(row[4])}


def get_user(email):
    rows = sql("SELECT %s FROM users u JOIN domains d ON u.domain_id=d.id WHERE u.email=%s"
               % (USER_COLS, lit(email)))
    return user_obj(rows[0]) if rows else None


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lab-usermgmt/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # to stderr, so `docker logs` shows it; no bodies
        sys.stderr.write("usermgmt: %s %s\n" % (self.address_string(), fmt % args))

    def reply(self, code, obj):
        body = (json.dumps(obj) + "\n").encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 65536:
            raise ValueError("body too large")
        data = json.loads(self.rfile.read(n) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("JSON object expected")
        return data

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        try:
            if parts == ["api", "health"] and method == "GET":
                sql("SELECT 1")
                return self.reply(200, {"status": "ok"})
            if parts == ["api", "domains"]:
                if method == "GET":
                    rows = sql("SELECT id, name FROM domains ORDER BY name")
                    return self.reply(200, [{"id": int(r[0]), "name": r[1]} for r in rows])
                if method == "POST":
                    return self.post_domain(self.body())
            if parts == ["api", "users"]:
                if method == "GET":
                    where = ""
                    if "domain" in query:
                        where = " WHERE d.name=%s" % lit(query["domain"][0])
                    rows = sql("SELECT %s FROM users u JOIN domains d ON u.domain_id=d.id%s ORDER BY u.email"
                               % (USER_COLS, where))
                    return self.reply(200, [user_obj(r) for r in rows])
                if method == "POST":
                    return self.post_user(self.body())
            if len(parts) == 3 and parts[:2] == ["api", "users"]:
                email = parts[2].lower()
                if method == "GET":
                    u = get_user(email)
                    return self.reply(200, u) if u else self.reply(404, {"error": "user not found"})
                if method == "PATCH":
                    return self.patch_user(email, self.body())
            return self.reply(404 if method == "GET" else 405, {"error": "no such endpoint"})
        except (ValueError, json.JSONDecodeError) as e:
            return self.reply(400, {"error": str(e)})
        except DBError as e:
            return self.reply(503, {"error": "database unavailable: " + str(e).splitlines()[0]})

    def post_domain(self, data):
        name = str(data.get("name", "")).strip().lower()
        if not DOMAIN_RE.match(name):
            raise ValueError("invalid domain name")
        if sql("SELECT id FROM domains WHERE name=%s" % lit(name)):
            return self.reply(409, {"error": "domain exists"})
        rows = sql("INSERT INTO domains (name) VALUES (%s); SELECT id, name FROM domains WHERE name=%s"
                   % (lit(name), lit(name)))
        return self.reply(201, {"id": int(rows[0][0]), "name": rows[0][1]})

    def post_user(self, data):
        email = str(data.get("email", "")).strip().lower()
        password = data.get("password")
        domain = str(data.get("domain", "")).strip().lower()
        local, _, edom = email.partition("@")
        if not LOCAL_RE.match(local) or not DOMAIN_RE.match(edom):
            raise ValueError("invalid email")
        if domain and domain != edom:
            raise ValueError("email is not in domain")
        if not isinstance(password, str) or len(password) < 8:
            raise ValueError("password of at least 8 characters required")
        quota = data.get("quota", DEFAULT_QUOTA)
        if not isinstance(quota, int) or quota < 0:
            raise ValueError("quota must be a non-negative integer (bytes, 0 = unlimited)")
        dom = sql("SELECT id FROM domains WHERE name=%s" % lit(edom))
        if not dom:
            return self.reply(404, {"error": "domain not found"})
        if sql("SELECT email FROM users WHERE email=%s" % lit(email)):
            return self.reply(409, {"error": "user exists"})
        hashed = "{SHA512-CRYPT}" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        sql("INSERT INTO users (email, domain_id, password, enabled, maildir, quota) "
            "VALUES (%s, %s, %s, 1, %s, %d)"
            % (lit(email), dom[0][0], lit(hashed), lit("%s/%s/" % (edom, local)), quota))
        return self.reply(201, get_user(email))

    def patch_user(self, email, data):
        sets = []
        for k, v in data.items():
            if k == "enabled" and isinstance(v, bool):
                sets.append("enabled=%d" % (1 if v else 0))
            elif k == "quota" and isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                sets.append("quota=%d" % v)
            else:
                raise ValueError("unsupported field '%s'" % k)
        if not sets:
            raise ValueError("nothing to change")
        if not sql("SELECT email FROM users WHERE email=%s" % lit(email)):
            return self.reply(404, {"error": "user not found"})
        sql("UPDATE users SET %s WHERE email=%s" % (", ".join(sets), lit(email)))
        return self.reply(200, get_user(email))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server((LISTEN, PORT), Handler)
    sys.stderr.write("usermgmt: listening on http://%s:%d\n" % (LISTEN, PORT))
    sys.stderr.flush()
    srv.serve_forever()
