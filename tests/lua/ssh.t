-- ssh.t: runbook.ssh (raw libssh2 module) against a private sshd on 127.0.0.31 and hostile
-- listeners: success paths, every failure code, timeouts that must fire, caps, streams.
local t = require "tap"
local fix = require "sshfix"
local ssh = require "runbook.ssh"
local core = require "runbook.core"

local user_was_absent = require("runbook.exec").run({ "id", "rbsshtest" }, { timeout = 5 }).status ~= 0
local env = fix.up()
local function opts(extra)
  local o = { host = env.HOST, port = env.PORT, user = env.USER, key = env.KEY,
              known_hosts = env.KNOWN_HOSTS, timeout = 5 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- ---------------------------------------------------------------- connect and exec
local s, msg, code = ssh.connect(opts())
t.ok(s, "connect with key and strict known_hosts: " .. tostring(msg))
t.is(s:is_open(), true, "session is open")

local r = s:exec("echo out; echo err >&2; exit 3")
t.is(r.stdout, "out\n", "stdout kept apart")
t.is(r.stderr, "err\n", "stderr kept apart")
t.is(r.status, 3, "exit status")
t.is(r.truncated, false, "not truncated")
t.ok(type(r.ms) == "number" and r.ms > 0, "ms measured")

r = s:exec("cat; printf '|%s' \"$#\"", { stdin = "line1\nline2 'quoted'\n" })
t.is(r.stdout, "line1\nline2 'quoted'\n|0", "stdin delivered, then EOF")
r = s:exec("cat")
t.is(r.stdout, "", "no stdin: EOF at once, cat does not wait")

r = s:exec("kill -9 $$")
t.is(r.signal, "KILL", "death by signal reported")
t.is(r.status, nil, "no exit status when killed")

-- output cap: the command writes 300000 bytes, we keep 1000 and still drain the rest
r = s:exec("head -c 300000 /dev/zero | tr '\\0' x; echo done >&2", { max_output = 1000 })
t.is(#r.stdout, 1000, "stdout capped at max_output")
t.is(r.truncated, true, "truncated flagged")
t.is(r.status, 0, "command completed (output was drained, not blocked)")
t.is(r.stderr, "done\n", "stderr still read after the cap")

-- big output without a cap problem
r = s:exec("seq 1 200000")
t.is(#r.stdout, #table.concat((function() local x = {} for i = 1, 200000 do x[i] = i .. "\n" end return x end)()),
  "200000 lines arrive whole")

-- ---------------------------------------------------------------- quoting as data
local hostile = {
  "it's", "a b  c", "$(touch MARK)", "`touch MARK`", "; touch MARK", "x\ntouch MARK\n", "",
  "\"double\" 'single' \\back\\", "$HOME ${PATH} * ? [a] ~ & | > < #", "\t tab",
}
local marker = fix.dir .. "-marker"
os.remove(marker)
for i, a in ipairs(hostile) do
  local arg = a:gsub("MARK", marker)
  local rr = s:exec(ssh.quote { "printf", "%s", arg })
  t.is(rr and rr.stdout, arg, ("hostile argument %d reaches the remote command byte for byte"):format(i))
end
t.ok(not fix.exists(marker), "no injected command ran (marker file absent)")
-- control: the same text NOT quoted does run, so the marker check above can fail
s:exec("printf %s $(touch " .. marker .. ")")
t.ok(fix.exists(marker), "control: an unquoted $(...) creates the marker")
os.remove(marker)
r = s:exec(ssh.quote { "sh", "-c", 'printf "%s|" "$@"', "sh", "", "a'b", "" })
t.is(r.stdout, "|a'b||", "empty arguments survive as empty arguments")

-- ---------------------------------------------------------------- streaming
local ch = s:open("seq 1 100000; echo warn >&2; exit 4", { timeout = 10 })
t.ok(ch, "open a streaming channel")
local total, maxchunk, chunks = 0, 0, 0
while true do
  local c, e = ch:read()
  if not c then t.is(e, nil, "stream ends with nil at EOF") break end
  total, chunks = total + #c, chunks + 1
  if #c > maxchunk then maxchunk = #c end
end
t.is(total, 588895, "all stdout bytes streamed")
t.ok(maxchunk <= 32768 and chunks > 10, ("bounded chunks (%d chunks, max %d bytes)"):format(chunks, maxchunk))
local st, serr, ssig = ch:close()
t.is(st, 4, "stream close gives the exit status")
t.is(serr, "warn\n", "stream close gives stderr")
t.is(ssig, nil, "no signal")
t.is(select(1, ch:close()), 4, "channel close is idempotent")
-- early close of an endless stream does not hang and leaves the session usable
ch = s:open("yes", { timeout = 60 })
t.ok(ch:read(), "endless stream yields data")
local t0 = core.now()
ch:close()
local el = core.now() - t0
t.ok(el < 20, ("early close returns, not after the channel's 60 s timeout (%.2fs)"):format(el))
t.is(s:exec("echo still").stdout, "still\n", "session usable after an early stream close")

-- ---------------------------------------------------------------- tcp_check (direct-tcpip)
local tc = s:tcp_check(env.HOST, env.PORT, { timeout = 3 })
t.ok(tc and tc.ms >= 0, "tcp_check to a listening port from the server")
local nt, nmsg, ncode = s:tcp_check(env.HOST, 1, { timeout = 3 })
t.is(nt, nil, "tcp_check to a closed port fails")
t.is(ncode, "refused", "closed port -> refused: " .. tostring(nmsg))
t.ok(s:is_open(), "session survives a refused tcp_check")

-- ---------------------------------------------------------------- timeouts
t0 = core.now()
r, msg, code = s:exec("sleep 60", { timeout = 0.5 })
el = core.now() - t0
t.is(code, "timeout", "exec deadline fires: " .. tostring(msg))
t.ok(el >= 0.45 and el < 20, ("... after %.2fs (the command runs 60 s)"):format(el))
t.is(s:is_open(), false, "a session that timed out mid-operation is closed")
r, msg, code = s:exec("true")
t.is(code, "closed", "later calls on it answer 'closed'")
s:close(); s:close()
t.ok(true, "close is idempotent")

local bport = fix.backlog()
s = assert(ssh.connect(opts()))
t0 = core.now()
r, msg, code = s:tcp_check(env.HOST, bport, { timeout = 1 })
el = core.now() - t0
t.is(code, "timeout", "tcp_check to a port that drops SYNs -> timeout: " .. tostring(msg))
t.ok(el >= 0.95 and el < 20, ("... after %.2fs (SYN retries alone take minutes)"):format(el))
s:close()

local sport = fix.silent()
t0 = core.now()
r, msg, code = ssh.connect(opts { port = sport, timeout = 1 })
el = core.now() - t0
t.is(code, "timeout", "a server that accepts and never speaks -> timeout: " .. tostring(msg))
t.ok(el >= 0.95 and el < 20, ("... after %.2fs (the server never speaks)"):format(el))

-- ---------------------------------------------------------------- connection failures
r, msg, code = ssh.connect(opts { port = 1 })
t.is(code, "refused", "closed port -> refused: " .. tostring(msg))
r, msg, code = ssh.connect(opts { host = "mx.example.test" })
t.is(code, "unreachable", "names are not resolved here: " .. tostring(msg))

r, msg, code = ssh.connect(opts { key = env.WRONG_KEY })
t.is(code, "auth", "a key not in authorized_keys -> auth")
t.like(msg, "authentication failed", "... with a message saying so")

r, msg, code = ssh.connect(opts { key = env.LOCKED_KEY, passphrase = env.LOCKED_PASSPHRASE })
t.ok(r, "a passphrase-protected key with its passphrase: " .. tostring(msg))
if r then r:close() end
r, msg, code = ssh.connect(opts { key = env.LOCKED_KEY, passphrase = "not-the-passphrase" })
t.is(code, "auth", "wrong passphrase -> auth")
t.ok(not msg:find("not-the-passphrase", 1, true) and not msg:find(env.LOCKED_PASSPHRASE, 1, true),
  "the passphrase is not in the message")

-- ssh-agent
local agent_sock = fix.dir .. "/agent.sock"
local ok = fix.sh(("ssh-agent -a %s > %s/agent.env && echo \"$(sed -n 's/^SSH_AGENT_PID=\\([0-9]*\\).*/\\1/p' %s/agent.env)\" > %s/agent.pid && SSH_AUTH_SOCK=%s ssh-add %s"):format(
  agent_sock, fix.dir, fix.dir, fix.dir, agent_sock, env.KEY))
t.ok(ok, "ssh-agent started with the key")
local ao = opts(); ao.key = nil; ao.agent = true; ao.agent_socket = agent_sock
r, msg, code = ssh.connect(ao)
t.ok(r, "auth through ssh-agent: " .. tostring(msg))
if r then t.is(r:exec("echo agent").stdout, "agent\n", "agent session runs commands"); r:close() end
ao.agent_socket = fix.dir .. "/no-such-agent.sock"
r, msg, code = ssh.connect(ao)
t.is(code, "auth", "no agent -> auth: " .. tostring(msg))

-- ---------------------------------------------------------------- host keys
r, msg, code = ssh.connect(opts { known_hosts = env.KNOWN_HOSTS_CHANGED })
t.is(code, "hostkey", "changed host key -> hostkey")
t.like(msg, "CHANGED", "... says the key changed")
t.ok(msg:find(env.FINGERPRINT, 1, true), "... shows the server's SHA256 fingerprint as OpenSSH does")

local newkh = fix.dir .. "/kh-new"
os.remove(newkh)
r, msg, code = ssh.connect(opts { known_hosts = newkh })
t.is(code, "hostkey", "unknown host key -> hostkey")
t.ok(msg:find(env.FINGERPRINT, 1, true), "... with the fingerprint: " .. tostring(msg))
t.ok(not fix.exists(newkh), "... and known_hosts is not written")

r, msg = ssh.connect(opts { known_hosts = newkh, accept_new = true })
t.ok(r, "accept_new accepts an unknown key: " .. tostring(msg))
if r then r:close() end
local line = fix.slurp(newkh) or ""
t.like(line, "^%[127%.0%.0%.31%]:" .. env.PORT .. " ssh%-ed25519 AAAA", "the key is recorded for [host]:port")
local okf, out = fix.sh(("ssh-keygen -F '[%s]:%d' -f %s"):format(env.HOST, env.PORT, newkh))
t.ok(okf and out:find("ssh-ed25519", 1, true), "OpenSSH finds the recorded key (ssh-keygen -F)")
r, msg = ssh.connect(opts { known_hosts = newkh })
t.ok(r, "strict connect now succeeds with the recorded key")
if r then r:close() end
r, msg, code = ssh.connect(opts { known_hosts = env.KNOWN_HOSTS_CHANGED, accept_new = true })
t.is(code, "hostkey", "accept_new never accepts a CHANGED key")
t.is(fix.slurp(env.KNOWN_HOSTS_CHANGED):match("fixture") and "edited" or "untouched", "untouched",
  "... and does not rewrite known_hosts")

-- ---------------------------------------------------------------- misuse raises
local function raises(f, pat, name)
  local okr, e = pcall(f)
  t.ok(not okr and tostring(e):find(pat), name .. (okr and "" or (": " .. tostring(e))))
end
raises(function() ssh.connect(opts { timout = 5 }) end, "unknown option 'timout'", "connect rejects unknown options")
raises(function() ssh.connect { host = env.HOST, user = env.USER, known_hosts = newkh } end, "key", "connect needs key or agent")
s = assert(ssh.connect(opts()))
raises(function() s:exec("true", { timout = 1 }) end, "unknown option 'timout'", "exec rejects unknown options")
raises(function() s:exec("true", { timeout = -1 }) end, "timeout", "exec rejects a negative timeout")
raises(function() s:exec("a\0b") end, "NUL", "exec rejects NUL in the command")
raises(function() s:open("true", { bogus = 1 }) end, "unknown option 'bogus'", "open rejects unknown options")
raises(function() s:tcp_check(env.HOST, 0) end, "port", "tcp_check checks the port")
do
  local cs <close> = assert(ssh.connect(opts()))
  t.ok(cs:is_open(), "to-be-closed session")
  s = cs
end
t.is(s:is_open(), false, "__close closed it at the end of the scope")

fix.down()
-- the fixture's user exists only while the fixture does, when the fixture created it
if user_was_absent then
  t.isnt(require("runbook.exec").run({ "id", env.USER }, { timeout = 5 }).status, 0,
    "fixture down removes the user " .. env.USER .. " it created (the machine is left as found)")
end
t.done()
