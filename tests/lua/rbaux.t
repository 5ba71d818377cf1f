-- rbaux.t: what the shared C helpers (src/rbaux.c) give every family, seen from Lua: the run
-- deadline bounds a primitive's wait even when the primitive's own timeout is longer (SMTP
-- reply, DNS over UDP, HTTP, an SQL connect, a local command), and every options table of these
-- families rejects an unknown key, naming the function. Private peers on 127.0.0.34
-- (tests/lib/netfix.lua) and 127.0.0.32 (tests/lib/fixture_sqlhttp.lua); the helpers' own unit
-- tests are tests/c/rbaux.c.
local t = require "tap"
local fx = require("netfix").new("rbaux")
local F = require "fixture_sqlhttp"
local core = require "runbook.core"
local smtp = require "runbook.smtp"
local dns = require "runbook.dns"
local net = require "runbook.net"
local exec = require "runbook.exec"
local S = fx.ADDR

-- Runs f under a run deadline of `secs`; returns f's results (or the error) and the time taken.
local function under_deadline(secs, f)
  local res
  local t0 = core.now()
  local ok, err = core.pcall_deadline(secs, function(e) return e end, function() res = table.pack(f()) end)
  local took = core.now() - t0
  if not ok then return { n = 2, nil, tostring(err) }, took end
  return res, took
end

-- r: what under_deadline returned for a call that the run deadline ended
local function blames_deadline(r)
  if r[3] then
    t.is(r[3], "timeout", "... code timeout")
    t.like(r[2], "run deadline", "... the message says it was the run deadline")
  else
    t.like(r[2], "deadline exceeded", "... or the deadline hook raised on return")
  end
end

local function body()
  -- SMTP: a server that accepts and never answers, 10 s per reply, a 0.5 s run deadline
  local silent = fx:peer("silent")
  local r, took = under_deadline(0.5, function()
    return smtp.probe { host = S, port = silent.port, timeout = 10, stop = "connect" }
  end)
  t.ok(took < 3, ("smtp.probe: the run deadline ends the wait for a reply (%.2fs, timeout 10s)"):format(took))
  t.ok(r[1] == nil, "... and the probe did not succeed")
  blames_deadline(r)

  -- DNS: a UDP server that reads and never replies, 10 s, a 0.5 s run deadline
  local usilent = fx:peer("udpsilent")
  r, took = under_deadline(0.5, function()
    return dns.query { name = "example.test", server = S, port = usilent.port, timeout = 10, retries = 0 }
  end)
  t.ok(took < 3, ("dns.query: the run deadline ends the wait for a reply (%.2fs, timeout 10s)"):format(took))
  t.ok(r[1] == nil, "... and the query did not succeed")

  -- HTTP: a server that answers after 60 s (tests/lib/fixture_httpd.py on 127.0.0.32), 10 s for
  -- the exchange, a 0.5 s run deadline
  local http = require "runbook.http"
  local hport = F.httpd()
  r, took = under_deadline(0.5, function()
    return http.request { url = ("http://127.0.0.32:%d/slow/60"):format(hport), timeout = 10 }
  end)
  t.ok(took < 3, ("http.request: the run deadline bounds the exchange (%.2fs, timeout 10s)"):format(took))
  t.ok(r[1] == nil, "... and the request did not succeed")
  if r[3] then t.is(r[3], "timeout", "... code timeout") end

  -- SQL: the silent server never sends MySQL's greeting; connect_timeout 10 s, a 1.5 s run
  -- deadline (libmariadb counts whole seconds: the connect ends after 2 s)
  local sql = require "runbook.sql"
  r, took = under_deadline(1.5, function()
    return sql.connect { host = S, port = silent.port, user = "nobody", connect_timeout = 10 }
  end)
  t.ok(took < 5, ("sql.connect: the run deadline bounds the connect (%.2fs, connect_timeout 10s)"):format(took))
  t.ok(r[1] == nil, "... and it did not connect")

  -- exec: a command that sleeps 5 s with a 10 s timeout, a 0.5 s run deadline
  r, took = under_deadline(0.5, function() return exec.run({ "sleep", "5" }, { timeout = 10 }) end)
  t.ok(took < 3, ("exec.run: the run deadline ends the command (%.2fs, timeout 10s)"):format(took))
  blames_deadline(r)
  r, took = under_deadline(0.5, function()
    local p = exec.spawn({ "sleep", "5" }, { timeout = 10 })
    local chunk, msg, code = p:read()
    p:close()
    return chunk, msg, code
  end)
  t.ok(took < 3, ("exec.spawn: the run deadline ends proc:read (%.2fs, timeout 10s)"):format(took))
  local res0, msg0, code0 = exec.run({ "sleep", "5" }, { timeout = 0.3 })
  t.is(code0, "timeout", "control: exec.run's own timeout -> 'timeout'")
  t.like(msg0 or "", "timed out after 0%.3 s", "... and says so")

  -- control: without a run deadline the primitive's own timeout still applies
  local t0 = core.now()
  local res, msg, code = smtp.probe { host = S, port = silent.port, timeout = 0.7, stop = "connect" }
  took = core.now() - t0
  t.is(code, "timeout", "control: no run deadline: the probe's own timeout -> 'timeout'")
  t.ok(took >= 0.6 and took < 3, ("... after its own 0.7 s (%.2fs)"):format(took))
  t.unlike(msg or "", "run deadline", "... and does not blame the run deadline")

  -- unknown option keys raise, naming the function
  local function raises(f, arg, pat, name)
    local ok, e = pcall(f, arg)
    t.ok(not ok and tostring(e):find(pat), name .. (ok and " (did not raise)" or (": " .. tostring(e))))
  end
  raises(smtp.probe, { host = S, port = 25, timout = 1 }, "smtp.probe: unknown option 'timout'", "smtp.probe names itself")
  raises(smtp.format_message, { form = "a@b.test" }, "smtp.format_message: unknown option 'form'", "smtp.format_message")
  raises(dns.query, { name = "x.test", sever = S }, "dns.query: unknown option 'sever'", "dns.query")
  raises(net.tcp_check, { host = S, port = 25, tmeout = 1 }, "net.tcp_check: unknown option 'tmeout'", "net.tcp_check")
  raises(function(o) return exec.run({ "true" }, o) end, { timout = 1 }, "exec.run: unknown option 'timout'", "exec.run")
  raises(function(o) return exec.spawn({ "true" }, o) end, { stdin = "x" }, "exec.spawn: unknown option 'stdin'", "exec.spawn: no stdin")
  raises(function(o) return exec.run({ "true" }, o) end, { timeout = -1 }, "option 'timeout' must be a number of seconds", "exec.run: timeout range")
  raises(require("runbook.http").request, { url = "http://127.0.0.34/", timout = 1 }, "http.request: unknown option 'timout'", "http.request")
  raises(net.tcp_check, { host = S }, "option 'port' is required", "net.tcp_check: port required")
  raises(dns.query, { name = ("a"):rep(64) .. ".test", server = S }, "bad DNS name", "dns.query: a 64-byte label is refused before any I/O")
  raises(dns.query, { name = "x.test", server = S, port = 0 }, "option 'port' must be an integer in 1..65535", "dns.query: port range")
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
F.cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
