-- docker_ssh.t: the SSH side of lua/runbook/prim/docker.lua: a host with transport ssh (the
-- lab's sshd on 127.0.0.10:2222, user rbops of group docker) whose docker socket is a private
-- dockerd (tests/lib/dockerd_private.lua). The lab's sshd allows local forwarding, so this host
-- gets the Engine API back end through a stream-local channel of the SSH session (streams apart),
-- said once by a docker.connect event; should an sshd refuse it (AllowTcpForwarding no, which
-- OpenSSH applies to stream-local channels too), the docker CLI back end is checked instead
-- (stdout and stderr merged). docker_tunnel.t covers both on its own sshds.
local t = require "tap"
local docker = require "runbook.docker"
local context = require "runbook.context"
local dp = require "dockerd_private"

-- Only the lab's sshd is needed: `lab up` is idempotent (fast when the lab is up).
local E = require("rblab").locked("shared", "docker ssh test")   -- the lab's sshd: no fault test may cut it meanwhile
local d = dp.start()
local S = d.sock

local function main()
  local forever = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
  d:run("rb-postfix", [[i=0; while [ $i -lt 300 ]; do
if [ $((i % 100)) -eq 5 ]; then a=info@example.test; else a=user$i@example.test; fi
echo "postfix/smtp[42]: 4Q$i: to=<$a>, status=sent"; i=$((i+1)); done
sleep 0.3; echo "dovecot: lmtp(info@example.test): Error: Permission denied" >&2]])
  d:run("mailserver-dovecot-1", "echo started; " .. forever,
        { args = { "--label", "com.docker.compose.project=mailserver", "--label", "com.docker.compose.service=dovecot" } })
  d:wait_exited("rb-postfix", 30)

  local inv = d.dir .. "/inventory.yaml"
  local f = assert(io.open(inv, "w"))
  f:write(([[
defaults: { timeout: 20s, connect_timeout: 5s }
audit: { journal: %s/audit.jsonl }
hosts:
  far:
    transport: ssh
    address: %s
    port: %s
    user: %s
    key: %s
    known_hosts: %s
    docker: { socket: %s }
    services:
      postfix: { container: rb-postfix, kind: postfix }
      dovecot: { compose: { project: mailserver, service: dovecot }, kind: dovecot }
      ghost: { container: rb-ghost }
]]):format(d.dir, E.LAB_EC2_ADDR, E.LAB_EC2_SSH_PORT, E.LAB_EC2_SSH_USER, E.LAB_SSH_KEY,
           E.LAB_SSH_KNOWN_HOSTS, S))
  f:close()
  local events = {}
  local ctx = context.new { inventory = inv, sinks = { function(ev) events[#events + 1] = ev end } }

  local logs, lm, lc = ctx:docker_logs("far/postfix", { since = "1h", grep = { "info@example.test" } })
  t.ok(logs, "ssh docker_logs opens (" .. tostring(lm) .. " " .. tostring(lc) .. ")")
  local recs = {}
  for rec in logs or function() end do recs[#recs + 1] = rec end
  t.is(#recs, 4, "3 stdout lines and the stderr line for the address")
  t.is(logs and logs.read, 301, "all 301 lines read over SSH")
  local r1 = recs[1] or {}
  local conn = {}
  for _, e in ipairs(events) do if e.op == "docker.connect" then conn[#conn + 1] = e end end
  local summary = conn[1] and conn[1].summary or ""
  local api = summary:find("^Engine API") ~= nil
  t.ok(#conn == 1 and (api or summary:find("^docker CLI over SSH %(fallback: the server refused")),
       "one docker.connect event names the back end and why: " .. summary)
  t.ok(r1.stream == (api and "stdout" or "merged") and r1.host == "far" and r1.container == "rb-postfix"
       and r1.line == "postfix/smtp[42]: 4Q5: to=<info@example.test>, status=sent",
       "record: " .. (api and "stdout" or "merged") .. " stream, line without ts")
  -- (the stderr line is written 0.3 s after the others, so it is the last one)
  t.ok(type(r1.time) == "number" and r1.ts and r1.ts:match("^%d+%-%d+%-%d+T.*Z$"), "record: timestamp parsed")
  t.ok(recs[4] and recs[4].stream == (api and "stderr" or "merged") and recs[4].line:find("Permission denied", 1, true),
       "the stderr line is there (" .. (api and "as stderr" or "2>&1 on the server") .. ")")
  local ev
  for _, e in ipairs(events) do if e.op == "docker.logs" then ev = e end end
  t.is(ev and ev.summary, "read 301 lines, matched 4", "trace summary counts the SSH lines")

  local tail = ctx:docker_logs("far/postfix", { tail = 2 })
  local tl = {}
  for rec in tail do tl[#tl + 1] = rec.line end
  t.ok(#tl == 2 and tl[2]:find("Permission denied", 1, true), "tail=2 over SSH (lazy)")
  t.is(tail:err(), nil, "lazy SSH stream ended cleanly")
  local none = ctx:docker_logs("far/postfix", { ["until"] = "1h", grep = "postfix" })
  t.ok(none and none.read == 0, "until=1h over SSH (--until 3600s): nothing")
  local win = ctx:docker_logs("far/postfix", { since = recs[2].ts, grep = "info@" })
  t.is(win and win.matched, 3, "since = a record's ts over SSH")

  local _, gm, gc = ctx:docker_logs("far/ghost", { tail = 5 })
  t.is(gc, "notfound", "ssh logs of a missing container: notfound (" .. tostring(gm) .. ")")

  -- state and compose resolution over SSH
  local st = ctx:container_state("far/dovecot")
  t.ok(st and st.running and st.name == "mailserver-dovecot-1" and st.labels["com.docker.compose.service"] == "dovecot",
       "container_state over SSH, compose resolved by the label filter")
  local ps = ctx:container_state("far/postfix")
  t.ok(ps and ps.running == false and ps.status == "exited" and ps.started > 0, "container_state over SSH: exited")
  t.is(select(3, ctx:container_state("far/ghost")), "notfound", "container_state over SSH: notfound")

  -- restart over SSH through the gate
  events = {}
  local _, _, code = ctx:container_restart("far/dovecot", { grace = 1 })
  local would
  for _, e in ipairs(events) do if e.event == "would" then would = e end end
  t.ok(code == "dryrun" and would and would.detail:find("docker restart mailserver-dovecot-1 on far", 1, true)
       and would.detail:find("'restart' '-t' '1'", 1, true) == nil, "dry run over SSH: would-record with the action")
  t.is(docker.inspect { socket = S, container = "mailserver-dovecot-1" }.started_at, st.started_at,
       "dry run: StartedAt unchanged")
  local actx = context.new { inventory = inv, apply = true, yes = true }
  local nr, nm = actx:container_restart("far/dovecot", { grace = 1, timeout = 30 })
  t.ok(nr and nr.running and nr.started_at ~= st.started_at, "apply over SSH: restarted, new StartedAt (" .. tostring(nm) .. ")")
  t.is(docker.inspect { socket = S, container = "mailserver-dovecot-1" }.started_at, nr.started_at,
       "the daemon agrees")
  ctx:close()
  actx:close()
end

local ok, err = xpcall(main, debug.traceback)
d:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
