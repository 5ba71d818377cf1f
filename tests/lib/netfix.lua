-- netfix.lua: private throwaway servers on 127.0.0.34 for the dns and smtp tests (failure cases
-- the lab cannot give). Everything lives under /tmp/runbook-test-<family>-<pid>; fx:cleanup()
-- kills every daemon it started (by pid) and removes the directory. Daemons also run under
-- `timeout` so that a test killed by prove cannot leave them behind for long.
--   local fx = require("netfix").new("dns")
--   local port = fx:dnsmasq{ "--local=/test/", ... }     -- private dnsmasq, returns its port
--   local p = fx:peer("silent")                          -- smtp_peer.py, returns {port=, log=}
--   fx:cleanup()
local M = {}
M.__index = M

local ADDR = "127.0.0.34"
M.ADDR = ADDR
local root = os.getenv("RUNBOOK_ROOT") or "."

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, rc = p:close()
  return out, ok and 0 or rc
end
M.sh = sh

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

local function sleep(s) require("runbook.core").sleep(s) end

function M.new(family)
  local dir = ("/tmp/runbook-test-%s-%d"):format(family, require("runbook.core").getpid())
  sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
  return setmetatable({ dir = dir, pids = {}, n = 0 }, M)
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read = read

-- A port nobody uses right now on ADDR (UDP and TCP), from the kernel.
function M:free_port()
  local out = sh([[/usr/bin/python3 -c 'import socket
s=socket.socket(); s.bind(("]] .. ADDR .. [[",0)); p=s.getsockname()[1]
u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("]] .. ADDR .. [[",p)); print(p)']])
  return assert(tonumber(out), "no free port: " .. out)
end

-- Starts a daemon in the background (argv string already quoted); returns its pid.
function M:spawn(cmd, name)
  self.n = self.n + 1
  local log = ("%s/%s-%d.log"):format(self.dir, name, self.n)
  local out = sh(("timeout 300 %s >%s 2>&1 & echo $!"):format(cmd, q(log)))
  local pid = assert(tonumber(out), "spawn failed: " .. out)
  self.pids[#self.pids + 1] = pid
  return pid, log
end

-- A private dnsmasq on ADDR:port with the given extra options; waits until it answers.
function M:dnsmasq(opts, port)
  port = port or self:free_port()
  local args = { "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
    "--listen-address=" .. ADDR, "--port=" .. port, "--pid-file=", "--user=root", "--group=root" }
  for _, o in ipairs(opts) do args[#args + 1] = o end
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local _, log = self:spawn(table.concat(words, " "), "dnsmasq")
  for _ = 1, 100 do
    if (read(log) or ""):find("started", 1, true) then return port, log end
    sleep(0.02)
  end
  error("dnsmasq did not start: " .. (read(log) or ""))
end

-- smtp_peer.py in MODE; returns {port=, log=} once it listens.
function M:peer(mode, cert, key)
  self.n = self.n + 1
  local portfile = ("%s/peer-%d.port"):format(self.dir, self.n)
  local log = ("%s/peer-%d.received"):format(self.dir, self.n)
  local cmd = ("/usr/bin/python3 %s %s %s %s %s"):format(q(root .. "/tests/lib/smtp_peer.py"),
    ADDR, mode, q(portfile), q(log))
  if cert then cmd = cmd .. " " .. q(cert) .. " " .. q(key) end
  self:spawn(cmd, "peer")
  for _ = 1, 250 do
    local p = read(portfile)
    if p and tonumber(p) then return { port = tonumber(p), log = log } end
    sleep(0.02)
  end
  error("smtp_peer.py did not start")
end

-- What a peer received so far ("" when nothing).
function M.received(peer) return read(peer.log) or "" end

-- A self-signed certificate for peer.test / 127.0.0.34: returns cert, key paths.
function M:cert()
  local cert, key = self.dir .. "/cert.pem", self.dir .. "/key.pem"
  local out, rc = sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=peer.test "
    .. "-addext subjectAltName=DNS:peer.test,IP:%s -keyout %s -out %s"):format(ADDR, q(key), q(cert)))
  assert(rc == 0, "openssl req failed: " .. out)
  return cert, key
end

-- Brings the lab up (idempotent) and returns its facts (`tests/lab/lab env`) as a table, or
-- nil, output when it cannot be brought up.
function M.lab()
  return require("rblab").up()
end

function M:cleanup()
  for _, pid in ipairs(self.pids) do
    -- the pid is `timeout`'s; it forwards TERM to the daemon it runs
    sh("kill " .. pid .. " 2>/dev/null; sleep 0.05; kill -9 " .. pid .. " 2>/dev/null")
  end
  self.pids = {}
  sh("rm -rf " .. q(self.dir))
end

return M
