-- docker_prim.t: the ctx methods of lua/runbook/prim/docker.lua on a local host whose docker
-- socket is a real, private dockerd (tests/lib/dockerd_private.lua): compose resolution, logs
-- with grep/windows/durations, the trace summary, container_state, and restart/start through
-- the write gate (dry run changes nothing, apply does and is journalled).
local t = require "tap"
local core = require "runbook.core"
local docker = require "runbook.docker"
local context = require "runbook.context"
local dp = require "dockerd_private"

local d = dp.start()
local S = d.sock

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function main()
  local lab = "--label"
  local forever = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
  -- a "postfix" printing Postfix-like lines, a few of them for one address
  d:run("rb-postfix", [[i=0; while [ $i -lt 2000 ]; do
if [ $((i % 500)) -eq 7 ]; then a=Info@Example.test; else a=user$i@example.test; fi
echo "Nov 28 12:00:00 mx postfix/smtp[42]: 4Q$i: to=<$a>, relay=127.0.0.20[127.0.0.20]:2525, status=sent"
i=$((i+1)); done; sleep 0.3; echo "warning: on stderr" >&2]])
  d:run("mailserver-dovecot-1", "echo 'lmtp(info@example.test): msgid=<m1@x.test>: saved mail to INBOX'; " .. forever,
        { args = { lab, "com.docker.compose.project=mailserver", lab, "com.docker.compose.service=dovecot" } })
  d:run("mailserver-dovecot-old", "true",
        { args = { lab, "com.docker.compose.project=mailserver", lab, "com.docker.compose.service=dovecot" } })
  d:run("mailserver-mariadb-1", forever,
        { args = { lab, "com.docker.compose.project=mailserver", lab, "com.docker.compose.service=mariadb" } })
  d:wait_exited("rb-postfix", 30)
  d:wait_exited("mailserver-dovecot-old", 30)

  local inv = d.dir .. "/inventory.yaml"
  write(inv, ([[
defaults: { timeout: 20s, connect_timeout: 5s }
audit: { journal: %s/audit.jsonl }
hosts:
  box:
    transport: local
    docker: { socket: %s }
    services:
      postfix: { container: rb-postfix, kind: postfix }
      dovecot: { compose: { project: mailserver, service: dovecot }, kind: dovecot }
      mariadb: { compose: { project: mailserver, service: mariadb } }
      ghost: { container: rb-ghost }
      nocompose: { compose: { project: mailserver, service: nosuch } }
]]):format(d.dir, S))
  local events = {}
  local ctx = context.new { inventory = inv, sinks = { function(ev) events[#events + 1] = ev end } }

  -- compose resolution: the running container wins over an exited one of the same service
  local prim = require "runbook.prim.docker"
  t.is(prim.resolve(ctx, "box/dovecot"), "mailserver-dovecot-1", "resolve: compose labels, running container first")
  t.is(prim.resolve(ctx, "box/postfix"), "rb-postfix", "resolve: inventory container name as is")
  local _, rm, rc = prim.resolve(ctx, "box/nocompose")
  t.is(rc, "notfound", "resolve: compose service without containers: notfound (" .. tostring(rm) .. ")")

  -- logs with grep: counted in the call, only matches kept
  events = {}
  local logs, lmsg = ctx:docker_logs("box/postfix", { since = "1h", grep = "info@example.TEST" })
  t.ok(logs, "docker_logs with grep: " .. tostring(lmsg))
  local recs = {}
  for rec in logs do recs[#recs + 1] = rec end
  t.is(#recs, 4, "grep (case-insensitive) matched 4 lines of 2001")
  t.is(logs.read, 2001, "all 2001 lines were read (stdout and stderr)")
  local r1 = recs[1] or {}
  t.ok(r1.host == "box" and r1.service == "box/postfix" and r1.container == "rb-postfix" and r1.stream == "stdout",
       "record carries host, service, container, stream")
  t.ok(type(r1.time) == "number" and r1.ts:match("Z$") and r1.line:match("^Nov 28 .*to=<Info@Example%.test>"),
       "record carries time, ts and the line without the timestamp")
  local ev
  for _, e in ipairs(events) do if e.op == "docker.logs" then ev = e end end
  t.is(ev and ev.summary, "read 2001 lines, matched 4", "trace summary: lines read and matched")
  t.ok(ev and ev.class == "read" and ev.outcome == "ok", "logs is a read, outcome ok")

  local many = ctx:docker_logs("box/postfix", { grep = { "user1@", "user2@", "4Q3:" }, max = 2 })
  local kept = 0
  for _ in many do kept = kept + 1 end
  t.ok(kept == 2 and many.matched == 3 and many.truncated, "grep list, max=2: 3 matched, 2 kept, truncated")
  local fn = ctx:docker_logs("box/postfix", { grep = function(r) return r.stream == "stderr" end })
  local se = fn()
  t.ok(se and se.line == "warning: on stderr" and fn() == nil, "grep as a function (stderr line)")

  -- windows
  local none = ctx:docker_logs("box/postfix", { ["until"] = "1h", grep = "postfix" })
  t.ok(none and none.read == 0, "until=1h (an hour ago): nothing")
  local lazy = ctx:docker_logs("box/postfix", { tail = 3 })
  local lz = {}
  for rec in lazy do lz[#lz + 1] = rec end
  t.ok(#lz == 3 and lz[3].line == "warning: on stderr", "no grep: lazy records, tail=3")
  t.is(lazy:err(), nil, "lazy stream ended cleanly")
  local first_ts = recs[1] and recs[1].ts
  local after = ctx:docker_logs("box/postfix", { since = first_ts, grep = "info@example.test" })
  t.is(after and after.matched, 4, "since = a record's own ts keeps that record (exact bound)")
  local dv = ctx:docker_logs("box/dovecot", { grep = "saved mail" })
  local dr = dv and dv()
  t.ok(dr and dr.container == "mailserver-dovecot-1" and dr.line:find("msgid=<m1@x.test>", 1, true),
       "compose service logs through the labels")

  -- failures
  local _, gm, gc = ctx:docker_logs("box/ghost", { since = "1h" })
  t.is(gc, "notfound", "logs of a missing container: notfound (" .. tostring(gm) .. ")")
  t.is(select(3, ctx:container_state("box/ghost")), "notfound", "state of a missing container: notfound")
  t.like(select(2, pcall(ctx.docker_logs, ctx, "box/postfix", { sinc = "1h" })), "unknown option 'sinc'",
         "unknown option raises")
  t.like(select(2, pcall(ctx.docker_logs, ctx, "box/postfix", { since = "last week" })), "expected a duration",
         "bad since raises")
  t.like(select(2, pcall(ctx.docker_logs, ctx, "box/nosuch", {})), "unknown service", "unknown service raises")

  -- state
  local st = ctx:container_state("box/dovecot")
  t.ok(st and st.running and st.name == "mailserver-dovecot-1" and st.started > 0, "container_state: running, started")
  local ps = ctx:container_state("box/postfix")
  t.ok(ps and not ps.running and ps.status == "exited" and ps.exit_code == 0, "container_state: exited, exit 0")

  -- restart through the gate: dry run
  events = {}
  local r, wmsg, wcode = ctx:container_restart("box/dovecot", { grace = 2 })
  t.ok(r == nil and wcode == "dryrun", "dry run: restart not done (" .. tostring(wmsg) .. ")")
  local would
  for _, e in ipairs(events) do if e.event == "would" then would = e end end
  t.like(would and would.detail, "^docker restart mailserver%-dovecot%-1 on box", "would-record: the exact action")
  t.like(would and would.before, "^running since ", "would-record: the current state")
  local st2 = docker.inspect { socket = S, container = "mailserver-dovecot-1" }
  t.is(st2.started_at, st.started_at, "dry run: StartedAt unchanged")

  -- apply
  local actx = context.new { inventory = inv, apply = true, yes = true,
                             sinks = { function(ev) events[#events + 1] = ev end } }
  events = {}
  local nr, nmsg = actx:container_restart("box/dovecot", { grace = 2, timeout = 30 })
  t.ok(nr and nr.running, "apply: restarted and running (" .. tostring(nmsg) .. ")")
  local st3 = docker.inspect { socket = S, container = "mailserver-dovecot-1" }
  t.ok(st3.started_at ~= st.started_at and st3.running, "apply: StartedAt changed")
  local wr
  for _, e in ipairs(events) do if e.event == "write" then wr = e end end
  t.ok(wr and wr.outcome == "ok" and tostring(wr.after):match("^running since " .. st3.started_at:gsub("%p", "%%%0")),
       "write event: outcome ok, verified state after")
  local jf = io.open(d.dir .. "/audit.jsonl")
  local journal = jf and jf:read("a") or ""
  if jf then jf:close() end
  t.like(journal, '"op":"docker.restart"', "audit journal records the restart")

  -- start a stopped compose service (the "docker compose restart dovecot" remedy)
  assert(docker.stop { socket = S, container = "mailserver-mariadb-1", grace = 1, timeout = 20 })
  local _, _, sc = ctx:container_start("box/mariadb")
  t.ok(sc == "dryrun" and not docker.inspect { socket = S, container = "mailserver-mariadb-1" }.running,
       "dry run: stopped container stays stopped (resolved although not running)")
  local ns = actx:container_start("box/mariadb", { timeout = 20 })
  t.ok(ns and ns.running, "apply: container_start runs it again")
  t.like(select(2, pcall(actx.container_restart, actx, "box/dovecot", { grce = 1 })), "unknown option 'grce'",
         "restart: unknown option raises")

  -- the daemon stopped
  d:stop_daemon()
  local _, dm, dc = ctx:container_state("box/dovecot")
  t.is(dc, "refused", "daemon stopped: container_state refused (" .. tostring(dm) .. ")")
  t.is(select(3, ctx:docker_logs("box/postfix", { tail = 1 })), "refused", "daemon stopped: docker_logs refused")
  ctx:close()
  actx:close()
end

local ok, err = xpcall(main, debug.traceback)
d:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
