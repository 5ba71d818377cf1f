-- dockerd_private.lua: a throwaway dockerd for the docker family's tests (LAB-NOTES flags:
-- no iptables, no bridge, vfs), with its state under /tmp/runbook-test-docker-<pid>.
--
--   local dp = require "dockerd_private"
--   local d = dp.start()            -- raises when dockerd does not answer within 20 s
--   d.sock, d.dir, d.image          -- socket path, state dir, an imported empty image
--   d:run(name, script, {tty=, args={...}})  -- docker run -d ... /bin/sh -c script (Debian's
--                                    -- /bin,/usr,/lib mounted read-only, no network)
--   d:cli(args...) -> output, ok     -- the docker CLI against this daemon
--   d:wait_exited(name, secs)        -- until the container stopped
--   d:stop_daemon()                  -- removes containers, stops dockerd (socket disappears)
--   d:cleanup()                      -- stop_daemon + unmount + rm -rf; safe to call twice
-- Trusted test code: uses the shell. Depends on: runbook.core, runbook.docker.
local core = require "runbook.core"
local docker = require "runbook.docker"

local M = {}
local D = {}
D.__index = D

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function capture(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local CLI = (capture("command -v /usr/bin/docker || command -v docker")):gsub("%s+$", "")

function M.start(opts)
  opts = opts or {}
  local dir = opts.dir or ("/tmp/runbook-test-docker-%d"):format(core.getpid())
  local self = setmetatable({ dir = dir, sock = dir .. "/docker.sock", image = "runbook-test/empty:1",
                              pidfile = dir .. "/dockerd.pid" }, D)
  sh("mkdir -p " .. q(dir .. "/data") .. " " .. q(dir .. "/exec") .. " " .. q(dir .. "/empty"))
  sh(("setsid dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs " ..
      "--data-root=%s --exec-root=%s --pidfile=%s --host=unix://%s >%s 2>&1 </dev/null &")
     :format(q(dir .. "/data"), q(dir .. "/exec"), q(self.pidfile), self.sock, q(dir .. "/dockerd.log")))
  local t0 = core.now()
  while core.now() - t0 < 20 do
    if docker.ping { socket = self.sock, timeout = 1 } then break end
    core.sleep(0.05)
  end
  if not docker.ping { socket = self.sock, timeout = 2 } then
    local log = capture("tail -5 " .. q(dir .. "/dockerd.log"))
    self:cleanup()
    error("private dockerd did not start: " .. log)
  end
  local out, ok = capture(("tar -C %s -c . | %s -H unix://%s import - %s")
    :format(q(dir .. "/empty"), CLI, self.sock, self.image))
  if not ok then self:cleanup(); error("docker import failed: " .. out) end
  return self
end

function D:cli(...)
  local parts = { CLI, "-H", "unix://" .. self.sock }
  for _, a in ipairs({ ... }) do parts[#parts + 1] = q(a) end
  local out, ok = capture(table.concat(parts, " "))
  return out, ok
end

-- run(name, script, {tty=bool, args={extra docker run args}}) -> container id
function D:run(name, script, opts)
  opts = opts or {}
  local args = { "run", "-d", "--name", name, "--network", "none",
                 "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "-v", "/bin:/bin:ro" }
  if opts.tty then args[#args + 1] = "-t" end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  for _, a in ipairs({ self.image, "/bin/sh", "-c", script }) do args[#args + 1] = a end
  local out, ok = self:cli(table.unpack(args))
  if not ok then error("docker run " .. name .. " failed: " .. out) end
  return (out:gsub("%s+$", ""))
end

function D:wait_exited(name, secs)
  local t0 = core.now()
  while core.now() - t0 < (secs or 30) do
    local r = docker.inspect { socket = self.sock, container = name, timeout = 5 }
    if r and not r.running and r.status == "exited" then return r end
    core.sleep(0.05)
  end
  return nil
end

local function pid_of(file)
  local f = io.open(file)
  if not f then return nil end
  local pid = tonumber(f:read("l") or "")
  f:close()
  return pid
end

function D:stop_daemon()
  if self.stopped then return end
  self.stopped = true
  if docker.ping { socket = self.sock, timeout = 2 } then
    sh(("ids=$(%s -H unix://%s ps -aq); [ -z \"$ids\" ] || %s -H unix://%s rm -f $ids >/dev/null 2>&1")
       :format(CLI, self.sock, CLI, self.sock))
  end
  local pid = pid_of(self.pidfile)
  if pid then
    sh("kill -TERM " .. pid .. " 2>/dev/null")
    local t0 = core.now()
    while core.now() - t0 < 15 and sh("kill -0 " .. pid .. " 2>/dev/null") do core.sleep(0.05) end
    if sh("kill -0 " .. pid .. " 2>/dev/null") then sh("kill -KILL " .. pid .. " 2>/dev/null") end
  end
end

-- Mounts of the daemon's vfs layers and exec-root stay after it stops (LAB-NOTES): unmount
-- them, deepest first, before removing the directory.
function D:cleanup()
  if self.cleaned then return end
  self:stop_daemon()
  self.cleaned = true
  sh(("awk -v d=%s 'index($2, d \"/\") == 1 {print $2}' /proc/mounts | sort -r | " ..
      "while read -r m; do umount -l \"$m\" 2>/dev/null; done"):format(q(self.dir)))
  sh("rm -rf " .. q(self.dir))
end

return M
