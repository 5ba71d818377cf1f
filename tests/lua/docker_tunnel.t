-- docker_tunnel.t: the Engine API on an SSH host, through a stream-local channel of the SSH
-- session (src/docker_tunnel.c), and prim/docker.lua's choice of back end. Real servers only:
-- the tests' own sshd (tests/lib/sshd-fixture.sh on 127.0.0.31, user rbsshtest) and a private
-- dockerd (tests/lib/dockerd_private.lua) whose socket the SSH user may open. A second sshd with
-- the fixture's keys and `AllowStreamLocalForwarding no` proves the fallback to the docker CLI,
-- said once in the trace; a socket the SSH user cannot open does the same. No lab needed.
local t = require "tap"
local docker = require "runbook.docker"
local ssh = require "runbook.ssh"
local context = require "runbook.context"
local fix = require "sshfix"
local dp = require "dockerd_private"

local env = fix.up()
local d = dp.start()
local S = d.sock
local extra_pid

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- an sshd like the fixture's but refusing stream-local forwarding, on its own port
local function refusing_sshd()
  local conf = fix.slurp(env.DIR .. "/sshd_config")
  local port
  for _ = 1, 50 do
    port = 20000 + math.random(0, 19999)
    if not fix.sh(("bash -c 'exec 3<>/dev/tcp/%s/%d'"):format(env.HOST, port)) then break end
  end
  conf = conf:gsub("ListenAddress [^\n]+", ("ListenAddress %s:%d"):format(env.HOST, port))
    :gsub("PidFile [^\n]+", "PidFile " .. d.dir .. "/sshd-noforward.pid")
  conf = conf .. "AllowStreamLocalForwarding no\n"
  write(d.dir .. "/sshd-noforward.conf", conf)
  local ok, out = fix.sh(("/usr/sbin/sshd -f %s -E %s/sshd-noforward.log"):format(d.dir .. "/sshd-noforward.conf", d.dir))
  assert(ok, "second sshd: " .. out)
  -- the pid file can exist before sshd has written its pid: wait for the digits (a second
  -- sshd was once left running after a green run: its pid had been read as "")
  for _ = 1, 100 do
    extra_pid = (fix.slurp(d.dir .. "/sshd-noforward.pid") or ""):match("%d+")
    if extra_pid and fix.sh(("bash -c 'exec 3<>/dev/tcp/%s/%d'"):format(env.HOST, port)) then break end
    os.execute("sleep 0.05")
  end
  local pub = fix.slurp(env.HOST_PUB):match("^(%S+ %S+)")
  write(d.dir .. "/known_hosts_noforward", ("[%s]:%d %s\n"):format(env.HOST, port, pub))
  return port
end

local function inventory(path, port, known_hosts, extra)
  write(path, ([[
defaults: { timeout: 20s, connect_timeout: 5s }
audit: { journal: %s/audit.jsonl }
hosts:
  far:
    transport: ssh
    address: %s
    port: %d
    user: %s
    key: %s
    known_hosts: %s
    docker: { socket: %s%s }
    services:
      postfix: { container: rb-mix, kind: postfix }
      dovecot: { compose: { project: mailserver, service: dovecot }, kind: dovecot }
      ghost: { container: rb-ghost }
]]):format(d.dir, env.HOST, port, env.USER, env.KEY, known_hosts, S, extra or ""))
end

local function connect_events(events)
  local list = {}
  for _, e in ipairs(events) do if e.op == "docker.connect" then list[#list + 1] = e end end
  return list
end

local function main()
  -- the SSH user (not in group docker) may use this daemon: the socket is its to open
  assert(fix.sh(("chmod 755 %s && chmod 666 %s"):format(d.dir, S)))
  local forever = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
  d:run("rb-mix", [[i=0; while [ $i -lt 300 ]; do echo "out $i to=<user$i@example.test>"; i=$((i+1)); done
echo "err: Permission denied" >&2; ]] .. forever)
  d:run("mailserver-dovecot-1", forever,
        { args = { "--label", "com.docker.compose.project=mailserver", "--label", "com.docker.compose.service=dovecot" } })
  d:run("rb-stopped", "true")
  d:wait_exited("rb-stopped", 30)
  -- rb-mix keeps running: wait (bounded) until its 301 lines are all in its log
  local seen = 0
  for _ = 1, 200 do
    local ls = docker.logs { socket = S, container = "rb-mix", timeout = 5 }
    seen = 0
    for _ in ls:lines() do seen = seen + 1 end
    if seen >= 301 then break end
    os.execute("sleep 0.05")
  end
  assert(seen == 301, "rb-mix wrote " .. seen .. " of its 301 lines within 10 s")

  -- ---------------------------------------------------------------- the raw module over SSH
  local sess = assert(ssh.connect { host = env.HOST, port = env.PORT, user = env.USER, key = env.KEY,
                                    known_hosts = env.KNOWN_HOSTS, timeout = 10 })
  local remote = { ssh = sess, socket = S, timeout = 10 }
  local function with(t2) for k, v in pairs(remote) do t2[k] = t2[k] or v end return t2 end

  t.like(docker.ping(with {}), "^1%.%d+$", "ping through the SSH session answers the API version")
  local ins = docker.inspect(with { container = "rb-mix" })
  t.ok(ins and ins.running and ins.name == "rb-mix", "inspect through SSH: running container")
  local list = docker.find(with { labels = { ["com.docker.compose.service"] = "dovecot" } })
  t.ok(list and #list == 1 and list[1].name == "mailserver-dovecot-1", "find through SSH: by compose label")
  local _, nm, nc = docker.inspect(with { container = "rb-nosuch" })
  t.is(nc, "notfound", "inspect through SSH of a missing container: notfound (" .. tostring(nm) .. ")")

  -- logs: stdout and stderr stay apart over SSH (the CLI could only merge them)
  local s = assert(docker.logs(with { container = "rb-mix" }))
  local n, errline, last = 0, nil, nil
  for st, ts, _, line in s:lines() do
    n = n + 1
    if st == "stderr" then errline = line end
    last = { st, ts, line }
  end
  t.is(s:err(), nil, "log stream through SSH ended cleanly")
  t.is(n, 301, "all 301 log lines through SSH")
  t.is(errline, "err: Permission denied", "the stderr line arrives as stderr")
  t.ok(last and last[2] and last[2]:match("^%d+%-%d+%-%d+T"), "records carry Docker's timestamps")
  local big = assert(docker.logs(with { container = "rb-mix", tail = 3 }))
  local tl = {}
  for _, _, _, line in big:lines() do tl[#tl + 1] = line end
  t.is(#tl, 3, "tail = 3 through SSH")

  -- exec
  local x, xm = docker.exec(with { container = "rb-mix", argv = { "sh", "-c", "echo hi; echo oops >&2; exit 3" } })
  t.ok(x and x.stdout == "hi\n" and x.stderr == "oops\n" and x.status == 3,
       "exec through SSH: stdout, stderr apart, exit status (" .. tostring(xm) .. ")")
  x = docker.exec(with { container = "rb-mix", argv = { "sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 0123456789; i=$((i+1)); done" },
                         max_output = 1000 })
  t.ok(x and #x.stdout == 1000 and x.truncated and x.status == 0, "exec output capped at max_output, truncated")
  local _, sm, sc = docker.exec(with { container = "rb-stopped", argv = { "true" } })
  t.is(sc, "closed", "exec in a stopped container: closed (" .. tostring(sm) .. ")")
  _, sm, sc = docker.exec(with { container = "rb-nosuch", argv = { "true" } })
  t.is(sc, "notfound", "exec in a missing container: notfound")
  t.like(select(2, pcall(docker.exec, with { container = "rb-mix", argv = {} })), "argv", "exec: empty argv raises")
  t.like(select(2, pcall(docker.ping, { socket = S, ssh = "x" })), "ssh", "ssh = a non-session raises")

  -- each request closes its channel and its sockets when it returns, not when Lua collects it
  local function nfds()
    local n, p = 0, io.popen("ls /proc/" .. fix.pid .. "/fd")
    for _ in p:lines() do n = n + 1 end
    p:close()
    return n
  end
  collectgarbage("stop")
  local before = nfds()
  for _ = 1, 40 do assert(docker.inspect(with { container = "rb-mix" })) end
  local after = nfds()
  collectgarbage("restart")
  t.ok(after <= before + 1, ("40 requests through SSH leave no descriptor open (%d -> %d)"):format(before, after))

  -- the daemon is a socket path on the server: one that is not there is refused by sshd
  local _, pm, pc = docker.ping(with { socket = d.dir .. "/nothing.sock" })
  t.is(pc, "denied", "a socket that is not there: the channel is refused, code denied (" .. tostring(pm) .. ")")
  t.ok(sess:is_open(), "the session survives a refused channel")
  t.like(docker.ping(with {}), "^1%.", "and carries the next request")

  -- a session closed under an open log stream: the stream fails cleanly, nothing dangles
  local live = assert(docker.logs(with { container = "rb-mix" }))
  live:next()
  sess:close()
  local got
  repeat got = { live:next() } until got[1] == nil
  t.ok(got[3] == "closed" or got[3] == nil, "a stream whose session closed ends (" .. tostring(got[3]) .. ")")
  live:close()
  t.ok(pcall(live.close, live), "closing twice is harmless")
  local _, cm, cc = docker.ping(with {})
  t.is(cc, "closed", "a closed session: code closed (" .. tostring(cm) .. ")")

  -- ---------------------------------------------------------------- prim/docker.lua: the API back end
  local inv = d.dir .. "/inventory.yaml"
  inventory(inv, env.PORT, env.KNOWN_HOSTS)
  local events = {}
  local ctx = context.new { inventory = inv, sinks = { function(ev) events[#events + 1] = ev end } }
  local st = ctx:container_state("far/dovecot")
  t.ok(st and st.running and st.name == "mailserver-dovecot-1", "container_state over SSH, compose resolved, through the API")
  local logs = ctx:docker_logs("far/postfix", { grep = { "user7@", "denied" } })
  local recs = {}
  for rec in logs or function() end do recs[#recs + 1] = rec end
  -- (dockerd copies the two streams separately: their order in the log is not the write order)
  local by = {}
  for _, rec in ipairs(recs) do by[rec.stream] = rec.line end
  t.ok(#recs == 2 and by.stdout and by.stdout:find("user7@", 1, true) and by.stderr == "err: Permission denied",
       "docker_logs over SSH: streams kept apart (no 'merged')")
  local r = ctx:service_exec("far/postfix", { "cat", "/etc/hostname" })
  t.ok(r and r.status == 0 and #r.stdout > 0, "service_exec over SSH through the API")
  local nx = ctx:service_exec("far/postfix", { "/no/such/dir/cat", "/etc/hostname" })   -- a read: it runs
  t.ok(nx and nx.status == 126 and nx.stdout == "" and nx.stderr:find("OCI runtime exec failed", 1, true),
       "a command the container cannot start: status 126, the reason on stderr as with docker exec")
  local ce = connect_events(events)
  t.is(#ce, 1, "one docker.connect event for the host")
  t.like(ce[1] and ce[1].summary, "^Engine API 1%.%d+ at .* through SSH", "it names the Engine API back end")
  local execs = 0
  for _, e in ipairs(events) do if e.op == "ssh.exec" or e.op == "host.exec" then execs = execs + 1 end end
  t.is(execs, 0, "no CLI command ran on the server")
  t.is(select(3, ctx:container_state("far/ghost")), "notfound", "container_state: notfound through the API")
  -- the gate: still a write, still only a would-record in a dry run
  events = {}
  local _, _, code = ctx:container_restart("far/dovecot", { grace = 1 })
  t.is(code, "dryrun", "restart through the API back end is gated (dry run)")
  local x2 = ctx:service_exec("far/postfix", { "sh", "-c", "touch /tmp/rb-gate-probe" })
  t.ok(x2 == nil, "service_exec of a shell is still a write: not run in a dry run")
  t.is(docker.exec { socket = S, container = "rb-mix", argv = { "test", "-e", "/tmp/rb-gate-probe" } }.status, 1,
       "control: the dry run created nothing in the container")
  ctx:close()

  -- ---------------------------------------------------------------- fallback: forwarding refused
  local port2 = refusing_sshd()
  local inv2 = d.dir .. "/inventory-noforward.yaml"
  inventory(inv2, port2, d.dir .. "/known_hosts_noforward")
  events = {}
  local fctx = context.new { inventory = inv2, sinks = { function(ev) events[#events + 1] = ev end } }
  local fst, fm = fctx:container_state("far/dovecot")
  t.ok(fst and fst.running and fst.name == "mailserver-dovecot-1", "refused forwarding: container_state through the CLI (" .. tostring(fm) .. ")")
  local fl = fctx:docker_logs("far/postfix", { grep = "user7@" })
  local frec = fl and fl()
  t.ok(frec and frec.stream == "merged", "refused forwarding: logs through the CLI (merged)")
  local fr = fctx:service_exec("far/postfix", { "cat", "/etc/hostname" })
  t.ok(fr and fr.status == 0, "refused forwarding: service_exec through docker exec")
  ce = connect_events(events)
  t.is(#ce, 1, "the fallback is said once")
  t.like(ce[1] and ce[1].summary, "^docker CLI over SSH %(fallback: the server refused a stream%-local channel", "and says why (the server's refusal)")
  fctx:close()

  -- ---------------------------------------------------------------- fallback: the socket is not the user's
  assert(fix.sh("chmod 600 " .. S))
  events = {}
  local pctx = context.new { inventory = inv, sinks = { function(ev) events[#events + 1] = ev end } }
  local _, pm2, pc2 = pctx:container_state("far/postfix")
  t.is(pc2, "denied", "socket not open to the SSH user: the CLI's answer, denied (" .. tostring(pm2) .. ")")
  ce = connect_events(events)
  t.like(ce[1] and ce[1].summary, "^docker CLI over SSH %(fallback: the server refused a stream%-local channel", "the fallback says the channel was refused")
  pctx:close()
  assert(fix.sh("chmod 666 " .. S))

  -- ---------------------------------------------------------------- sudo in the inventory: the CLI
  inventory(inv, env.PORT, env.KNOWN_HOSTS, ", sudo: true")
  events = {}
  local sctx = context.new { inventory = inv, sinks = { function(ev) events[#events + 1] = ev end } }
  sctx:container_state("far/postfix")
  ce = connect_events(events)
  t.like(ce[1] and ce[1].summary, "docker%.sudo", "docker.sudo: the CLI back end, said so")
  sctx:close()
end

local ok, err = xpcall(main, debug.traceback)
if extra_pid then os.execute("kill " .. extra_pid .. " 2>/dev/null") end
-- and whatever still runs with this test's config (the pid may never have been read)
os.execute("pkill -f -- '-f " .. d.dir .. "/sshd-noforward.conf' 2>/dev/null")
d:cleanup()
fix.down()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
