-- docker_api.t: runbook.docker (the raw C module) against a real, private dockerd
-- (tests/lib/dockerd_private.lua) and, for the failures a healthy daemon cannot produce, a
-- unix socket with nobody behind it and one that answers too slowly (python3, stdlib only).
local t = require "tap"
local core = require "runbook.core"
local docker = require "runbook.docker"
local dp = require "dockerd_private"

local d = dp.start()
local S = d.sock
local tmp = d.dir
local helper_pids = {}

local function sh(cmd) local ok = os.execute(cmd); return ok == true or ok == 0 end

local function collect(opts)
  local s, msg, code = docker.logs(opts)
  if not s then return nil, msg, code end
  local out = {}
  while true do
    local st, ts, e, line = s:next()
    if st == nil then
      s:close()
      if ts then return nil, ts, e end   -- nil, msg, code
      return out
    end
    out[#out + 1] = { stream = st, ts = ts, epoch = e, line = line }
  end
end

local function hwm_kb()
  for l in io.lines("/proc/self/status") do
    local v = l:match("^VmHWM:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local asan = false
for l in io.lines("/proc/self/maps") do if l:find("libasan", 1, true) then asan = true; break end end

local function main()
  local lab = "--label"
  d:run("mix", [[i=0; while [ $i -lt 5 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
printf 'crlf\r\n'; echo; printf 'no newline']])
  d:run("tty", "echo hello; echo world", { tty = true })
  d:run("seq", [[for i in 0 1 2 3 4 5 6 7 8 9; do echo "n $i"; sleep 0.02; done]])
  d:run("big", [[i=0; while [ $i -lt 100000 ]; do
echo "Nov 28 12:00:00 mx postfix/smtp[4242]: 4Q$i: to=<user$i@example.test>, relay=127.0.0.20[127.0.0.20]:2525, delay=0.1, status=sent (250 2.0.0 Ok)"
i=$((i+1)); done]])
  d:run("mailserver-dovecot-1", "trap 'exit 0' TERM; while :; do sleep 0.05; done",
        { args = { lab, "com.docker.compose.project=mailserver", lab, "com.docker.compose.service=dovecot" } })
  d:run("mailserver-postfix-1", "trap 'exit 0' TERM; while :; do sleep 0.05; done",
        { args = { lab, "com.docker.compose.project=mailserver", lab, "com.docker.compose.service=postfix" } })
  for _, c in ipairs { "mix", "tty", "seq", "big" } do d:wait_exited(c, 60) end

  t.like(docker.ping { socket = S, timeout = 5 }, "^1%.%d+$", "ping returns the API version")

  -- demultiplexing stdout / stderr, CR LF, empty line, unterminated last line
  local l = collect { socket = S, container = "mix", timeout = 10 }
  t.ok(l and #l == 13, "mix: 13 lines (5 out, 5 err, crlf, empty, unterminated)")
  local outs, errs = {}, {}
  for _, r in ipairs(l or {}) do
    if r.stream == "stdout" then outs[#outs + 1] = r.line elseif r.stream == "stderr" then errs[#errs + 1] = r.line end
  end
  t.is(table.concat(outs, "|"), "out 0|out 1|out 2|out 3|out 4|crlf||no newline", "stdout lines in order, CR stripped")
  t.is(table.concat(errs, "|"), "err 0|err 1|err 2|err 3|err 4", "stderr lines in order")
  local r1 = l and l[1] or {}
  t.like(r1.ts, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", "timestamp string as Docker sends it")
  t.ok(type(r1.epoch) == "number" and math.abs(r1.epoch - os.time()) < 600, "epoch seconds parsed from it")
  local only_err = collect { socket = S, container = "mix", stdout = false }
  t.ok(only_err and #only_err == 5 and only_err[1].stream == "stderr", "stdout=false gives stderr only")
  local nots = collect { socket = S, container = "mix", timestamps = false, stderr = false }
  t.ok(nots and nots[1].ts == nil and nots[1].epoch == nil and nots[1].line == "out 0",
       "timestamps=false: no ts, line intact")

  -- tty container: raw body, no frame headers
  local tl = collect { socket = S, container = "tty" }
  t.is(tl and #tl, 2, "tty: two lines")
  t.ok(tl and tl[1].line == "hello" and tl[2].line == "world" and tl[1].stream == "stdout" and tl[1].epoch,
       "tty: text, CR stripped, timestamps parsed")
  local _, pmsg, pcode = collect { socket = S, container = "tty", tty = false }
  t.is(pcode, "protocol", "a raw body decoded as multiplexed is a protocol error: " .. tostring(pmsg))

  -- since / until / tail windows (exact bounds when given the record's own ts)
  local sq = collect { socket = S, container = "seq" }
  t.is(sq and #sq, 10, "seq: 10 lines")
  local w = collect { socket = S, container = "seq", since = sq[4].ts, ["until"] = sq[7].ts }
  t.is(w and #w, 4, "since/until RFC 3339: 4 lines")
  t.ok(w and w[1].line == "n 3" and w[4].line == "n 6", "window holds n 3 .. n 6 (bounds inclusive)")
  local we = collect { socket = S, container = "seq", since = sq[5].epoch - 0.005, ["until"] = sq[8].epoch + 0.005 }
  t.ok(we and #we == 4 and we[1].line == "n 4" and we[4].line == "n 7", "since/until as epoch numbers")
  local tail = collect { socket = S, container = "seq", tail = 2 }
  t.ok(tail and #tail == 2 and tail[1].line == "n 8" and tail[2].line == "n 9", "tail=2: the last two lines")
  local fut = collect { socket = S, container = "seq", since = os.time() + 3600 }
  t.ok(fut and #fut == 0, "since in the future: no line, clean end")

  -- 100,000 lines streamed with bounded memory
  local h0 = hwm_kb()
  local t0 = core.now()
  local s = assert(docker.logs { socket = S, container = "big", timeout = 30 })
  local n, m, last = 0, 0, nil
  local heap0, heap_max = collectgarbage("count"), 0
  for _, _, _, line in s:lines() do
    n = n + 1
    if n % 1000 == 0 then heap_max = math.max(heap_max, collectgarbage("count") - heap0) end
    if line:find("<user4242@example.test>", 1, true) then m = m + 1 end
    last = line
  end
  local secs = core.now() - t0
  local st = s:stats()
  t.is(n, 100000, "big: all 100000 lines")
  t.is(m, 1, "big: the one line for user4242")
  t.like(last, "4Q99999: to=<user99999@", "big: last line intact")
  t.is(s:err(), nil, "big: stream ended cleanly")
  t.ok(st.bytes > 15e6, ("big: %.1f MB read from the daemon"):format(st.bytes / 1e6))
  t.ok(st.buffer <= 128 * 1024, ("big: receive buffer peaked at %d bytes"):format(st.buffer))
  local grew = hwm_kb() - h0
  t.ok(heap_max < 8 * 1024, ("big: Lua heap grew by at most %d KB"):format(heap_max // 1))
  if asan then   -- ASan's quarantine keeps freed blocks resident: RSS says nothing there
    t.ok(true, ("big: peak RSS grew by %d KB under ASan (not checked), %.2f s"):format(grew, secs))
  else
    t.ok(grew < 8 * 1024, ("big: peak RSS grew by %d KB (log is %d KB), %.2f s"):format(grew, st.bytes // 1024, secs))
  end
  local s2 = assert(docker.logs { socket = S, container = "big" })
  local a = s2:next()
  s2:close()
  t.ok(a == "stdout" and s2:next() == nil, "close() mid-stream; next() after close gives nil")

  -- inspect / find
  local ins = docker.inspect { socket = S, container = "mix" }
  t.ok(ins and ins.name == "mix" and ins.running == false and ins.status == "exited" and ins.exit_code == 0
       and ins.tty == false and ins.image == d.image and #ins.id == 64, "inspect: exited container")
  t.ok(docker.inspect { socket = S, container = "tty" }.tty == true, "inspect: tty container")
  local dv = docker.inspect { socket = S, container = "mailserver-dovecot-1" }
  t.ok(dv and dv.running and dv.labels["com.docker.compose.service"] == "dovecot" and dv.started > 0,
       "inspect: running container, labels, started epoch")
  local f = docker.find { socket = S, labels = { ["com.docker.compose.project"] = "mailserver",
                                                ["com.docker.compose.service"] = "dovecot" } }
  t.ok(f and #f == 1 and f[1].name == "mailserver-dovecot-1" and f[1].state == "running",
       "find: compose service resolved through both labels")
  local fp = docker.find { socket = S, labels = { ["com.docker.compose.project"] = "mailserver" } }
  t.is(fp and #fp, 2, "find: both services of the project")
  local none = docker.find { socket = S, labels = { ["com.docker.compose.project"] = "nosuch" } }
  t.ok(none and #none == 0, "find: empty list for an unknown project")

  -- restart / stop / start
  local before = dv.started_at
  t.ok(docker.restart { socket = S, container = "mailserver-dovecot-1", grace = 2, timeout = 20 }, "restart")
  local after = docker.inspect { socket = S, container = "mailserver-dovecot-1" }
  t.ok(after.running and after.started_at ~= before, "restart: running with a new StartedAt")
  local ok1, how1 = docker.stop { socket = S, container = "mailserver-dovecot-1", grace = 2, timeout = 20 }
  t.ok(ok1 and how1 == "done" and not docker.inspect { socket = S, container = "mailserver-dovecot-1" }.running,
       "stop: container stopped")
  local ok2, how2 = docker.stop { socket = S, container = "mailserver-dovecot-1", timeout = 20 }
  t.ok(ok2 and how2 == "unchanged", "stop again: unchanged (HTTP 304)")
  local ok3, how3 = docker.start { socket = S, container = "mailserver-dovecot-1" }
  t.ok(ok3 and how3 == "done" and docker.inspect { socket = S, container = "mailserver-dovecot-1" }.running,
       "start: running again")

  -- notfound
  local _, m1, c1 = docker.logs { socket = S, container = "nosuch" }
  t.is(c1, "notfound", "logs of an unknown container: notfound")
  t.like(m1, "No such container: nosuch", "message carries the daemon's text")
  local _, _, c2 = docker.logs { socket = S, container = "nosuch", tty = false }
  t.is(c2, "notfound", "notfound also without the inspect step (tty given)")
  t.is(select(3, docker.inspect { socket = S, container = "nosuch" }), "notfound", "inspect: notfound")
  t.is(select(3, docker.restart { socket = S, container = "nosuch" }), "notfound", "restart: notfound")

  -- programming errors raise
  t.like(select(2, pcall(docker.logs, { socket = S, container = "mix", timout = 5 })), "unknown option 'timout'",
         "unknown option raises")
  t.like(select(2, pcall(docker.inspect, { socket = S, container = "a/../b" })), "invalid container name",
         "container name with / raises")
  t.like(select(2, pcall(docker.logs, { socket = S, container = "mix", since = "yesterday" })), "RFC 3339",
         "since: garbage raises")
  t.like(select(2, pcall(docker.logs, { socket = S, container = "mix", tail = -1 })), "tail",
         "tail: negative raises")
  t.like(select(2, pcall(docker.find, { socket = S, labels = { ['a"b'] = "x" } })), "bad label",
         "find: label with a quote raises")

  -- failures a healthy daemon cannot give: nobody listening; a peer that stalls
  local py = tmp .. "/peer.py"
  local f2 = assert(io.open(py, "w"))
  f2:write([[
import os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
if mode == "dead":
    sys.exit(0)                  # the socket file stays, nobody listens
s.listen(4)
open(path + ".ready", "w").close()
deadline = time.time() + 20
while time.time() < deadline:
    c, _ = s.accept()
    c.recv(65536)
    if mode == "stall-body":     # headers and one frame, then nothing
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
                  b"\x01\x00\x00\x00\x00\x00\x00\x0bfirst line\n")
    time.sleep(5)
    c.close()
]])
  f2:close()
  sh(("python3 %s %s dead"):format(py, tmp .. "/dead.sock"))
  local _, dm, dc = docker.inspect { socket = tmp .. "/dead.sock", container = "x", timeout = 2 }
  t.is(dc, "refused", "socket with no listener: refused (" .. tostring(dm) .. ")")
  local function peer(name, mode)
    local p = io.popen(("python3 %s %s %s >/dev/null 2>&1 & echo $!"):format(py, tmp .. "/" .. name, mode))
    helper_pids[#helper_pids + 1] = tonumber(p:read("l"))
    p:close()
    local t1 = core.now()
    while core.now() - t1 < 5 and not io.open(tmp .. "/" .. name .. ".ready") do core.sleep(0.02) end
    return tmp .. "/" .. name
  end
  local silent = peer("silent.sock", "silent")
  local t1 = core.now()
  local _, _, tc = docker.logs { socket = silent, container = "x", tty = false, timeout = 0.5 }
  local el = core.now() - t1
  t.ok(tc == "timeout" and el < 2, ("logs: peer never answers: timeout after %.2f s"):format(el))
  t1 = core.now()
  local _, _, tc2 = docker.inspect { socket = silent, container = "x", timeout = 0.5 }
  t.ok(tc2 == "timeout" and core.now() - t1 < 2, "inspect: peer never answers: timeout")
  local stall = peer("stall.sock", "stall-body")
  local ss = docker.logs { socket = stall, container = "x", tty = false, timeout = 5, idle_timeout = 0.4 }
  t.ok(ss, "logs: a stalling peer that sent its headers opens")
  local _, _, _, first = ss:next()
  t1 = core.now()
  local e1, e2, e3 = ss:next()
  t.ok(first == "first line" and e1 == nil and e3 == "timeout" and core.now() - t1 < 2,
       "logs: stream stalls mid-body: idle timeout (" .. tostring(e2) .. ")")

  -- the daemon stopped: its socket is gone
  d:stop_daemon()
  local _, sm, sc = docker.logs { socket = S, container = "mix", timeout = 2 }
  t.is(sc, "refused", "daemon stopped: logs refused")
  t.like(sm, "daemon running", "message says what to check")
  t.is(select(3, docker.ping { socket = S, timeout = 2 }), "refused", "daemon stopped: ping refused")
end

local ok, err = xpcall(main, debug.traceback)
for _, pid in ipairs(helper_pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
d:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
