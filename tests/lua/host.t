-- host.t: runbook.prim.host's ctx methods (exec, ssh_exec, service_exec, exec_stream, df, stat,
-- tcp_check) against a private sshd on 127.0.0.31 and the local machine: argv as data, the
-- dry-run gate on exec, the remote timeout that really ends the remote command, one session per
-- host per run (and a new one after it died), secrets kept out of the output.
local t = require "tap"
local fix = require "sshfix"
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local exec = require "runbook.exec"
local core = require "runbook.core"

local env = fix.up()

-- The exec mechanics below (quoting, stdin, timeouts, streams) are exercised with `sh -c`, which
-- runbook.gate never lists as a read (a shell can do anything). This trusted test script adds it
-- to the gate's read-only table for itself; runbooks cannot reach runbook.gate. The gating of
-- commands that are not listed is checked with touch below.
require("runbook.gate").readonly.sh = true

local function make_inv(extra_host)
  local doc = {
    defaults = { timeout = 10, connect_timeout = 5 },
    hosts = {
      box = { transport = "ssh", address = env.HOST, port = env.PORT, user = env.USER, key = env.KEY,
              known_hosts = env.KNOWN_HOSTS, services = { shell = { process = true } } },
      here = { transport = "local" },
    },
  }
  for k, v in pairs(extra_host or {}) do doc.hosts[k] = v end
  return assert(inventory.validate(doc))
end

local events = {}
local function sink(ev) events[#events + 1] = ev end
local function count(op)
  local n = 0
  for _, ev in ipairs(events) do if ev.op == op then n = n + 1 end end
  return n
end

local ctx = context.new { inventory = make_inv(), apply = false, trace = true, sinks = { sink } }

-- pids of processes whose command line contains pat (this machine is the "server" too)
local function pids(pat)
  pat = "[" .. pat:sub(1, 1) .. "]" .. pat:sub(2)   -- so the pattern does not match the pgrep shell
  local ok, out = fix.sh("pgrep -f -- '" .. pat .. "' || true")
  local l = {}
  for p in (ok and out or ""):gmatch("%d+") do l[#l + 1] = p end
  return l
end

-- ---------------------------------------------------------------- argv reaches the server as data
local marker = fix.dir .. "-marker"
os.remove(marker)
local hostile = "it's $(touch " .. marker .. ") `touch " .. marker .. "`; touch " .. marker ..
  "\ntouch " .. marker .. " | & > <"
local r, msg, code = ctx:ssh_exec("box", { "printf", "%s", hostile }, { read_only = true })
t.is(r and r.stdout, hostile, "hostile argv comes back byte for byte: " .. tostring(msg))
t.ok(not fix.exists(marker), "nothing in it was executed (no marker file)")
r = ctx:exec("box", { "sh", "-c", 'printf "[%s]" "$@"', "sh", "", "two words", "" }, { read_only = true })
t.is(r and r.stdout, "[][two words][]", "ctx:exec over ssh keeps empty and spaced arguments")
t.is(count("ssh.connect"), 1, "one ssh session for several calls to the same host")
local last
for _, ev in ipairs(events) do if ev.op == "ssh.exec" then last = ev end end
t.like(last and last.detail, "^timeout %-k 2 10 'printf' '%%s' 'it'\\''s ", "trace detail is the exact remote command")

-- ---------------------------------------------------------------- exec is a write unless read_only
r, msg, code = ctx:ssh_exec("box", { "touch", marker })
t.is(code, "dryrun", "exec without read_only is a write: dry run by default")
t.like(msg, "dry run: would ssh%.exec box: touch ", "... the message says what it would do")
t.ok(not fix.exists(marker), "... and it did not run")
local would
for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
t.like(would and would.detail, "touch", "a would-record was emitted")
local ainv = make_inv()
ainv.audit.journal = marker .. "-audit.jsonl"     -- an applied write needs its journal
local actx = context.new { inventory = ainv, apply = true, yes = true }
r, msg = actx:ssh_exec("box", { "touch", marker })
t.ok(r and r.status == 0 and fix.exists(marker), "with apply the write runs: " .. tostring(msg))
os.remove(marker)
os.remove(ainv.audit.journal)
actx:close()

-- ---------------------------------------------------------------- the timeout ends the remote command
local t0 = core.now()
r, msg, code = ctx:ssh_exec("box", { "sh", "-c", "sleep 41.7 & sleep 41.8; touch " .. marker },
  { timeout = 1, read_only = true })
local el = core.now() - t0
t.is(code, "timeout", "ssh_exec timeout -> code timeout: " .. tostring(msg))
t.ok(el >= 0.9 and el < 2.5, ("... after %.2fs"):format(el))
t.is(#pids("sleep 41.[78]"), 0, "the remote command and its background child are gone")
core.sleep(0.3)
t.ok(not fix.exists(marker), "... and never reached its next command")

t0 = core.now()
r, msg, code = ctx:ssh_exec("box", { "sh", "-c", "trap '' TERM; sleep 42.5" }, { timeout = 1, read_only = true })
el = core.now() - t0
t.is(code, "timeout", "a command ignoring TERM also times out")
t.ok(el >= 2.8 and el < 4.5, ("... KILLed after the 2 s grace (%.2fs)"):format(el))
t.is(#pids("sleep 42.5"), 0, "... and is gone")
t.ok(ctx:ssh_exec("box", { "true" }, { read_only = true }), "the session is still usable after remote timeouts")
t.is(count("ssh.connect"), 1, "... the same session")

-- control: without the remote timeout(1), closing our side does not end a silent command
do
  local ssh = require "runbook.ssh"
  local s = assert(ssh.connect { host = env.HOST, port = env.PORT, user = env.USER, key = env.KEY,
                                 known_hosts = env.KNOWN_HOSTS, timeout = 5 })
  local _, _, c = s:exec("sleep 43.9", { timeout = 0.5 })
  core.sleep(0.3)
  local left = pids("sleep 43.9")
  t.ok(c == "timeout" and #left >= 1, "control: a raw exec timeout alone leaves the remote command running")
  for _, p in ipairs(left) do fix.sh("kill " .. p) end
end

-- ---------------------------------------------------------------- a dead session is replaced
local bport = fix.backlog()
r, msg, code = ctx:tcp_check("box", env.HOST, bport, { timeout = 1 })
t.is(code, "timeout", "tcp_check from the ssh host to a port dropping SYNs -> timeout")
r, msg = ctx:ssh_exec("box", { "echo", "again" }, { read_only = true })
t.is(r and r.stdout, "again\n", "next call works: " .. tostring(msg))
t.is(count("ssh.connect"), 2, "... on a new session (the timed-out one was closed)")

-- ---------------------------------------------------------------- tcp_check
r = ctx:tcp_check("box", env.HOST, env.PORT)
t.ok(r and r.ms >= 0 and r.via == "direct-tcpip", "tcp_check from the ssh host to its sshd port (direct-tcpip)")
r, msg, code = ctx:tcp_check("box", env.HOST, 1)
t.is(code, "refused", "tcp_check from the ssh host to a closed port -> refused")
r = ctx:tcp_check("here", env.HOST, env.PORT)
t.ok(r and r.ms >= 0, "tcp_check from the local host")
r, msg, code = ctx:tcp_check("here", env.HOST, 1)
t.is(code, "refused", "tcp_check from the local host to a closed port -> refused")

-- ---------------------------------------------------------------- local exec
r = ctx:exec("here", { "printf", "%s", "a 'b' $(c)" }, { read_only = true })
t.is(r and r.stdout, "a 'b' $(c)", "ctx:exec on a local host runs argv directly")
r = ctx:exec("here", { "sh", "-c", "cat; exit 5" }, { read_only = true, stdin = "in" })
t.is(r and r.stdout, "in", "local stdin")
t.is(r and r.status, 5, "local exit status")
r = ctx:exec("box", { "sh", "-c", "cat; exit 6" }, { read_only = true, stdin = "remote in" })
t.is(r and r.stdout, "remote in", "ssh stdin")
t.is(r and r.status, 6, "ssh exit status")
r = ctx:exec("box", { "sh", "-c", "head -c 5000 /dev/zero" }, { read_only = true, max_output = 100 })
t.ok(r and #r.stdout == 100 and r.truncated, "max_output over ssh")

-- ---------------------------------------------------------------- service on the host itself
r = ctx:service_exec("box/shell", { "id", "-un" }, { read_only = true })
t.is(r and r.stdout, env.USER .. "\n", "process service runs on its host")

-- ---------------------------------------------------------------- streams
local function stream_check(target, name)
  local lines, m = ctx:exec_stream(target, { "sh", "-c", "seq 1 50000; printf tail; echo oops >&2; exit 3" },
    { read_only = true, timeout = 10 })
  t.ok(lines, name .. ": exec_stream opens: " .. tostring(m))
  if not lines then return end
  local n, lastl, ok = 0, nil, true
  for l in lines do
    n = n + 1
    if n <= 50000 and l ~= tostring(n) then ok = false end
    lastl = l
  end
  t.ok(ok and n == 50001 and lastl == "tail", ("%s: every line, in order, final partial line too (%d)"):format(name, n))
  local res = lines:close()
  t.is(res.status, 3, name .. ": exit status at close")
  t.like(res.stderr, "oops", name .. ": stderr at close")
end
stream_check("box", "ssh")
stream_check("here", "local")
stream_check("box/shell", "process service over ssh")
local lines, _, c = ctx:exec_stream("box", { "touch", marker }, { read_only = true })
t.is(c, "dryrun", "a stream of a command the gate does not list is gated like any exec, read_only or not")

-- ---------------------------------------------------------------- df and stat
local d = ctx:df("box", "/tmp")
local v = exec.statvfs("/tmp")
t.ok(d and d.size_kb > 0, "df over ssh parses")
t.ok(d and math.abs(d.size_kb - v.size_kb) <= 1, ("df size_kb matches statvfs (%s vs %s)"):format(d and d.size_kb, v.size_kb))
t.ok(d and d.use_pct >= 0 and d.use_pct <= 100 and d.mount:match("^/"), "df use_pct and mount")
local dl = ctx:df("here", "/tmp")
t.ok(dl and dl.mount == d.mount, "df on the local host agrees on the mount")
r, msg, code = ctx:df("box", "/no/such/dir")
t.is(code, "notfound", "df of a missing path -> notfound: " .. tostring(msg))

local f = fix.dir .. "/statme"
fix.sh(("install -m 640 -o %s /dev/null %s"):format(env.USER, f))
local st = ctx:stat("box", f)
t.ok(st, "stat over ssh")
t.is(st and st.owner, env.USER, "stat owner")
t.is(st and st.mode, "0640", "stat mode as an octal string")
t.is(st and st.type, "file", "stat type")
st = ctx:stat("box", "/tmp")
t.is(st and st.mode, "1777", "sticky bit in mode")
t.is(st and st.type, "directory", "directory type")
r, msg, code = ctx:stat("box", fix.dir .. "/missing file")
t.is(code, "notfound", "stat of a missing path -> notfound")

-- ---------------------------------------------------------------- misuse raises
local function raises(fn, pat, name)
  local okr, e = pcall(fn)
  t.ok(not okr and tostring(e):find(pat), name .. (okr and "" or (": " .. tostring(e))))
end
raises(function() ctx:ssh_exec("box", { "true" }, { timout = 1 }) end, "unknown option 'timout'", "unknown exec option raises")
raises(function() ctx:ssh_exec("here", { "true" }) end, "not ssh", "ssh_exec on a local host raises")
raises(function() ctx:exec("nowhere", { "true" }) end, "unknown host", "unknown host raises")
raises(function() ctx:exec("box", "true") end, "argv", "a string instead of argv raises")
raises(function() ctx:exec("box", { "a\0b" }) end, "NUL", "NUL in argv raises")
raises(function() ctx:tcp_check("box", env.HOST, 70000) end, "port", "bad port raises")
ctx:close()

-- ---------------------------------------------------------------- the key passphrase stays secret
local script = fix.dir .. "/pass.lua"
local fh = assert(io.open(script, "w"))
fh:write(([[
local context = require "runbook.context"
local inv = assert(require("runbook.inventory").validate {
  hosts = { box = { transport = "ssh", address = %q, port = %d, user = %q, key = %q,
                    known_hosts = %q, passphrase_env = "RB_TEST_PASSPHRASE" } } })
local json = require "runbook.json"
local ctx = context.new { inventory = inv, sinks = { function(ev) print(json.encode(ev)) end } }
local r, msg, code = ctx:ssh_exec("box", { "echo", "ran" }, { read_only = true })
print("RESULT", r and r.stdout or msg, code)
ctx:close()
]]):format(env.HOST, env.PORT, env.USER, env.LOCKED_KEY, env.KNOWN_HOSTS))
fh:close()
local bin = os.getenv("RUNBOOK") or "./runbook"
local ok, out = fix.sh(("RB_TEST_PASSPHRASE=%s %s lua %s"):format(env.LOCKED_PASSPHRASE, bin, script))
t.ok(ok and out:find("RESULT\tran", 1, true), "key with a passphrase from passphrase_env works")
t.ok(not out:find(env.LOCKED_PASSPHRASE, 1, true), "the passphrase appears nowhere in the output")
ok, out = fix.sh(("RB_TEST_PASSPHRASE=wrong-passphrase-xyz %s lua %s"):format(bin, script))
t.ok(out:find("auth", 1, true), "a wrong passphrase -> auth")
t.ok(not out:find("wrong-passphrase-xyz", 1, true), "... and it is not printed either")
ok, out = fix.sh(("env -u RB_TEST_PASSPHRASE %s lua %s"):format(bin, script))
t.ok(out:find("RB_TEST_PASSPHRASE", 1, true) and out:find("auth", 1, true), "unset passphrase variable -> auth, names the variable")

fix.down()
t.done()
