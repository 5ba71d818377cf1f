-- runbook.http (raw C module) against a private HTTP server on 127.0.0.32 (tests/lib/fixture_httpd.py)
-- and hung TCP servers: methods, headers, 4xx/5xx as results, no redirects, refused, timeouts,
-- body cap, TLS against a plain server, header injection refused, masked transcript, escape.
local t = require "tap"
local F = require "fixture_sqlhttp"
local http = require "runbook.http"
local json = require "runbook.json"
local core = require "runbook.core"

F.run(t, function()
  local port = F.httpd()
  local base = "http://127.0.0.32:" .. port

  -- misuse raises
  t.like(select(2, pcall(http.request, { url = base, timout = 3 })), "unknown option 'timout'",
    "unknown option raises")
  t.like(select(2, pcall(http.request, { url = "ftp://127.0.0.32/x" })), "http:// or https://",
    "non-http scheme raises")
  t.like(select(2, pcall(http.request, { url = "file:///etc/passwd" })), "http:// or https://",
    "file:// raises")
  t.like(select(2, pcall(http.request, { url = base, method = "TRACE" })), "option 'method'",
    "unknown method raises")
  t.like(select(2, pcall(http.request, { url = base, headers = { X = "a\r\nInjected: 1" } })),
    "line break", "CR/LF in a header value raises")
  t.like(select(2, pcall(http.request, { url = base, headers = { ["Bad Name"] = "v" } })),
    "invalid header name", "a header name with a space raises")
  t.like(select(2, pcall(http.request, { url = base, timeout = -1 })), "option 'timeout'",
    "negative timeout raises")
  t.like(select(2, pcall(http.request, {})), "'url' is required", "url required")
  t.like(select(2, pcall(http.request, { url = base, method = "HEAD", body = "x" })),
    "not allowed with HEAD", "a body with HEAD raises")

  -- GET with headers
  local tok = "tok-" .. core.random_hex(8)
  local r, msg, code = http.request { url = base .. "/echo", timeout = 5,
    headers = { Authorization = "Bearer " .. tok, ["X-Runbook"] = "yes" } }
  t.ok(r, "GET /echo: " .. (msg or ""))
  t.is(r.status, 200, "GET: status 200")
  local echo = json.decode(r.body)
  t.is(echo.method, "GET", "GET: server saw GET")
  t.is(echo.headers["x-runbook"], "yes", "GET: custom header sent")
  t.is(echo.headers.authorization, "Bearer " .. tok, "GET: Authorization sent")
  t.is(r.headers["content-type"], "application/json", "response header names are lowercased")
  t.is(math.type(r.status), "integer", "status is an integer")
  t.ok(type(r.ms) == "number" and r.ms >= 0, "ms is a number")
  t.like(r.transcript, "^> GET /echo HTTP/1%.1\n", "transcript starts with the request line")
  t.like(r.transcript, "\n> X%-Runbook: yes\n", "transcript has request headers")
  t.like(r.transcript, "\n< HTTP/1%.[01] 200", "transcript has the response status")
  t.ok(not r.transcript:find(tok, 1, true), "the bearer token is not in the transcript")
  t.like(r.transcript, "Authorization: %*%*%*", "Authorization shown as ***")

  -- POST/PUT/PATCH/DELETE with bodies (binary safe)
  for _, m in ipairs { "POST", "PUT", "PATCH", "DELETE" } do
    local body = json.encode { method = m, s = "quote\" back\\ nl\n" }
    r = assert(http.request { method = m, url = base .. "/echo", body = body,
      headers = { ["Content-Type"] = "application/json" } })
    echo = json.decode(r.body)
    t.ok(r.status == 200 and echo.method == m and echo.body == body, m .. ": method and body arrive exactly")
  end
  t.ok(not r.transcript:find("quote", 1, true), "the transcript carries no body")
  r = assert(http.request { method = "POST", url = base .. "/echo" })
  t.is(json.decode(r.body).body, "", "POST without a body sends an empty one")
  r = assert(http.request { method = "HEAD", url = base .. "/text" })
  t.ok(r.status == 200 and r.body == "" and r.headers["content-length"] == "10", "HEAD: headers, no body")

  -- 4xx/5xx are results
  for _, s in ipairs { 400, 404, 409, 500, 503 } do
    r, msg = http.request { url = base .. "/status/" .. s }
    t.ok(r and r.status == s and json.decode(r.body).error == ("status %d from fixture"):format(s),
      ("HTTP %d is returned as a result with its body"):format(s))
  end

  -- redirects are not followed
  r = assert(http.request { url = base .. "/redirect" })
  t.ok(r.status == 302 and r.headers.location == "/echo", "302 returned, not followed")

  -- repeated headers joined
  r = assert(http.request { url = base .. "/dup" })
  t.is(r.headers["x-dup"], "one, two", "repeated response headers joined with ', '")

  -- body cap
  r, msg, code = http.request { url = base .. "/big/100000", max_body = 1000 }
  t.is(r, nil, "body over max_body: nil")
  t.is(code, "cap", "body over max_body: code cap")
  t.like(msg, "max_body", "body over max_body: message says so")
  r = assert(http.request { url = base .. "/big/100000", max_body = 100000 })
  t.is(#r.body, 100000, "body exactly at max_body is fine")

  -- slow answer: the total timeout fires. The server answers only after 60 s, so a generous
  -- bound (20 s: a loaded machine) still proves the timeout ended the request, not the server.
  local t0 = core.now()
  r, msg, code = http.request { url = base .. "/slow/60", timeout = 0.5 }
  local took = core.now() - t0
  t.is(code, "timeout", "slow server: code timeout")
  t.ok(took >= 0.4 and took < 20, ("slow server: timeout=0.5 honoured, not the server's 60 s (%.2fs)"):format(took))

  -- a tiny timeout is still a timeout (libcurl reads 0 ms as "none")
  t0 = core.now()
  r, msg, code = http.request { url = base .. "/slow/60", timeout = 0.0001 }
  took = core.now() - t0
  t.ok(code == "timeout" and took < 20, ("timeout=0.0001 fires, not 'no timeout' (%.2fs, the server answers at 60 s)"):format(took))

  -- a server that accepts and never answers
  local silent = F.httpd("silent")
  t0 = core.now()
  r, msg, code = http.request { url = ("http://127.0.0.32:%d/"):format(silent), timeout = 0.7 }
  took = core.now() - t0
  t.is(code, "timeout", "silent server: code timeout")
  t.ok(took >= 0.6 and took < 20, ("silent server: timeout honoured (%.2fs; the server never answers)"):format(took))

  -- a full accept queue: connect_timeout fires
  local full = F.httpd("full")
  t0 = core.now()
  r, msg, code = http.request { url = ("http://127.0.0.32:%d/"):format(full), timeout = 60,
                                connect_timeout = 0.6 }
  took = core.now() - t0
  t.is(code, "timeout", "full accept queue: code timeout (" .. tostring(msg) .. ")")
  t.ok(took >= 0.5 and took < 20, ("full accept queue: connect_timeout honoured, not the 60 s total (%.2fs)"):format(took))

  -- refused
  r, msg, code = http.request { url = "http://127.0.0.32:9/" }
  t.is(code, "refused", "closed port: code refused")

  -- TLS to a plain-HTTP server fails as tls; verify is on by default
  r, msg, code = http.request { url = ("https://127.0.0.32:%d/echo"):format(port), timeout = 3 }
  t.is(code, "tls", "https to a plain server: code tls")
  r, msg, code = http.request { url = ("https://127.0.0.32:%d/echo"):format(port), timeout = 3,
                                verify = false }
  t.is(code, "tls", "verify=false does not turn a broken handshake into success")

  -- proxy variables in the environment are ignored: with them pointing at a closed port the
  -- request still goes straight to the server
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[local r, m, c = require("runbook.http").request{url = %q}
    io.write(r and tostring(r.status) or tostring(c))]]):format(base .. "/echo"))
  f:close()
  local bin = os.getenv("RUNBOOK") or "./runbook"
  local out = F.sh(("http_proxy=http://127.0.0.32:9 HTTP_PROXY=http://127.0.0.32:9 " ..
    "ALL_PROXY=http://127.0.0.32:9 %s lua %s 2>&1"):format(bin, script))
  os.remove(script)
  t.is(out, "200", "environment proxy variables are ignored")

  -- escape
  t.is(http.escape("a b/c?d=é&'; DROP"), "a%20b%2Fc%3Fd%3D%C3%A9%26%27%3B%20DROP", "escape: reserved and UTF-8")
  t.is(http.escape("AZaz09-._~"), "AZaz09-._~", "escape: unreserved kept")
  t.is(http.escape("../x\0y"), "..%2Fx%00y", "escape: slash and NUL encoded")
  r = assert(http.request { url = base .. "/echo/" .. http.escape("info@example.test/../x") })
  t.is(json.decode(r.body).path, "/echo/info%40example.test%2F..%2Fx", "escaped segment arrives as one segment")
end)
