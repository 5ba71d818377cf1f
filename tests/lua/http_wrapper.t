-- ctx:http (lua/runbook/prim/http.lua) through the real context and choke point, against a
-- private HTTP server on 127.0.0.32 that logs what it receives: reads, JSON in/out, segment
-- escaping, 4xx/5xx as nil,"HTTP n: msg","http",resp, bearer token from a 0600 file, dry-run
-- writes not sent and shown with secret fields masked, applied writes journalled, timeouts.
local t = require "tap"
local F = require "fixture_sqlhttp"
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local json = require "runbook.json"
local core = require "runbook.core"

F.run(t, function()
  local port = F.httpd()
  local dir = ("/tmp/runbook-test-http-%s"):format(core.random_hex(6))
  os.execute("mkdir -p " .. dir)
  local token = "Tok-" .. core.random_hex(10)
  local tokfile = dir .. "/token"
  local f = assert(io.open(tokfile, "w"))
  f:write(token, "\n")
  f:close()
  os.execute("chmod 600 " .. tokfile)
  local journal = dir .. "/audit.jsonl"
  local function inv()
    return assert(inventory.validate {
      defaults = { timeout = 5, connect_timeout = 2 },
      audit = { journal = journal },
      http = {
        fx = { base_url = ("http://127.0.0.32:%d/"):format(port), token_file = tokfile },
        plain = { base_url = ("http://127.0.0.32:%d"):format(port) },
        closed = { base_url = "http://127.0.0.32:9" },
      },
    })
  end
  local events = {}
  local function sink(ev) events[#events + 1] = ev end
  local function all_text()
    local parts = {}
    for _, ev in ipairs(events) do parts[#parts + 1] = json.encode(ev) end
    parts[#parts + 1] = F.read_file(journal) or ""
    return table.concat(parts, "\n")
  end
  local function received()
    local r = assert(require("runbook.http").request { url = ("http://127.0.0.32:%d/log"):format(port) })
    return json.decode(r.body)
  end

  local ctx = context.new { inventory = inv(), apply = false, sinks = { sink } }

  -- reads
  local r, msg, code, resp = ctx:http("fx", "GET", "/echo")
  t.ok(r, "GET /echo: " .. (msg or ""))
  t.is(r.status, 200, "status 200")
  t.is(r.data.method, "GET", "JSON response decoded into data")
  t.is(r.data.headers.authorization, "Bearer " .. token, "bearer token from the 0600 token_file sent")
  t.is(r.data.headers.accept, "application/json", "Accept: application/json")
  t.is(events[#events].op, "http.get", "a http.get call event")
  t.ok(not all_text():find(token, 1, true), "the token appears in no event")

  r = assert(ctx:http("plain", "get", { "echo", "info@example.test/../x?y#z" }, nil, { query = { domain = "shop.test", q = "a b&c" } }))
  t.is(r.data.path, "/echo/info%40example.test%2F..%2Fx%3Fy%23z?domain=shop.test&q=a%20b%26c",
    "segments and query values percent-encoded")
  t.is(r.data.headers.authorization, nil, "no token configured: no Authorization header")
  r = assert(ctx:http("plain", "GET", "/text"))
  t.ok(r.data == nil and r.body == "plain text", "non-JSON response: raw body, no data")
  t.is(ctx:url_escape("a b/é"), "a%20b%2F%C3%A9", "ctx:url_escape")

  -- 4xx/5xx
  r, msg, code, resp = ctx:http("plain", "GET", "/status/404")
  t.is(r, nil, "404: nil")
  t.is(msg, "HTTP 404: status 404 from fixture", "404: message from the JSON body")
  t.is(code, "http", "404: code http")
  t.ok(resp and resp.status == 404 and resp.data.error == "status 404 from fixture", "404: response as 4th value")
  r, msg, code, resp = ctx:http("plain", "GET", "/status/503")
  t.ok(code == "http" and resp.status == 503, "503: code http, status in the 4th value")
  t.is(events[#events].outcome, "http", "the call event records the failure")

  -- operational failures
  r, msg, code = ctx:http("closed", "GET", "/x")
  t.is(code, "refused", "closed port: refused")
  local t0 = core.now()
  r, msg, code = ctx:http("plain", "GET", { "slow", "3" }, nil, { timeout = 0.5 })
  t.is(code, "timeout", "slow endpoint: timeout")
  t.ok(core.now() - t0 < 1.5, "opts.timeout honoured")

  -- misuse raises
  t.like(select(2, pcall(ctx.http, ctx, "nosuch", "GET", "/")), "unknown http endpoint 'nosuch'", "unknown endpoint raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "TRACE", "/")), "bad argument #2", "bad method raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", "/echo/../x")), "dot", "dot segment in a path raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", "/a b")), "bad argument #3", "space in a path raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", "echo")), "bad argument #3", "relative path raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", { "a", ".." })), "segment 2", "'..' segment raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", "/echo", { a = 1 })), "GET has no body", "GET with a body raises")
  t.like(select(2, pcall(ctx.http, ctx, "fx", "GET", "/echo", nil, { timout = 1 })), "unknown option 'timout'",
    "unknown option raises")

  -- dry-run write: not sent, shown exactly with secret fields masked
  local pw = "Pw-" .. core.random_hex(8)
  local body = { email = "new@example.test", password = pw, domain = "example.test",
                 nested = { api_token = pw .. "x", keep = "visible" } }
  local before_log = #received()
  events = {}
  r, msg, code = ctx:http("fx", "POST", "/echo", body, { before = "/text" })
  t.is(code, "dryrun", "dry run: code dryrun")
  t.like(msg, "would http%.post fx POST /echo", "dry run: message names method and path")
  local log = received()
  t.is(#log, before_log + 1, "dry run: only the before GET reached the server")
  t.is(log[#log], "GET /text", "dry run: the before read was a GET")
  local would
  for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
  t.ok(would, "a would event")
  local d = would and would.detail or ""
  t.like(d, "^POST http://127%.0%.0%.32:%d+/echo\n", "would: exact method and URL")
  t.like(d, '"password":"%*%*%*"', "would: password field shown as ***")
  t.like(d, '"api_token":"%*%*%*"', "would: nested *token* field shown as ***")
  t.like(d, '"keep":"visible"', "would: other fields shown")
  t.like(d, "Authorization: Bearer %*%*%*", "would: token masked")
  t.is(would and would.before, "plain text", "would: before state shown")
  t.ok(not all_text():find(pw, 1, true), "dry run: the password appears in no event")

  -- apply
  events = {}
  local actx = context.new { inventory = inv(), apply = true, yes = true, sinks = { sink } }
  r, msg, code = actx:http("fx", "POST", "/echo", body)
  t.ok(r and r.status == 200, "apply: sent " .. (msg or ""))
  local sent = r and json.decode(r.data.body) or {}
  t.is(sent.password, pw, "apply: the server got the real password (request unchanged)")
  t.is(r and r.data.headers["content-type"], "application/json", "apply: Content-Type application/json")
  local rec = json.decode((F.read_file(journal) or ""):match("[^\n]+\n?$") or "null")
  t.ok(type(rec) == "table" and rec.op == "http.post" and rec.outcome == "ok", "journal has the applied POST")
  t.ok(type(rec) == "table" and type(rec.after) == "table" and rec.after.password == "***",
    "journal shows the body with the password masked")
  t.ok(not all_text():find(pw, 1, true), "apply: the password appears in no event or journal line")
  t.ok(not all_text():find(token, 1, true), "apply: the token appears in no event or journal line")

  for _, m in ipairs { "PUT", "PATCH", "DELETE" } do
    r = actx:http("plain", m, { "echo", "x" }, m ~= "DELETE" and { enabled = false } or nil)
    t.ok(r and r.data.method == m, m .. " applied")
  end
  r, msg, code, resp = actx:http("plain", "POST", { "status", "409" }, { name = "dup" })
  t.ok(r == nil and code == "http" and resp.status == 409 and msg == "HTTP 409: status 409 from fixture",
    "a refused write: nil, HTTP 409 message, code http, response")
  t.is(events[#events].outcome, "http", "refused write: the write event records the failure")
  ctx:close()
  actx:close()
  os.execute("rm -rf " .. dir)
end)
