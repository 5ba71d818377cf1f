-- sshfix.lua: the ssh tests' throwaway servers on 127.0.0.31 (tests/lib/sshd-fixture.sh).
--   local fix = require "sshfix"
--   local env = fix.up()            -- private sshd; env.HOST, PORT, USER, KEY, ... (see the script)
--   local port = fix.silent()       -- a TCP listener that never answers
--   local port = fix.backlog()      -- a listener whose full accept queue drops SYNs
--   fix.sh(cmd) -> ok, output       -- run a shell command (test plumbing only)
--   fix.down()                      -- also done by a watchdog when this process exits
--   fix.lab_locked(mode)            -- (lab tests) re-run this test under flock -s|-x on the lab's
--                                      test lock; returns the lab's facts (`lab up`, `lab env`)
local M = {}

local root = os.getenv("RUNBOOK_ROOT") or "."
local script = root .. "/tests/lib/sshd-fixture.sh"

local function mypid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  return pid
end

M.pid = mypid()
M.dir = "/tmp/runbook-test-ssh-" .. M.pid

function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function kv(out)
  local env = {}
  for k, v in out:gmatch("([%u_]+)=([^\n]*)") do env[k] = v end
  return env
end

function M.up()
  local ok, out = M.sh(("bash %s up %s %s"):format(script, M.dir, M.pid))
  if not ok then error("sshd fixture failed: " .. out) end
  local env = kv(out)
  env.PORT = tonumber(env.PORT)
  return env
end

local function listener(kind)
  local ok, out = M.sh(("bash %s %s %s/%s %s"):format(script, kind, M.dir, kind, M.pid))
  if not ok then error(kind .. " fixture failed: " .. out) end
  return tonumber(kv(out).PORT)
end
function M.silent() return listener("silent") end
function M.backlog() return listener("backlog") end

function M.down()
  for _, sub in ipairs { "/silent", "/backlog", "/hold", "" } do
    M.sh(("bash %s down %s%s"):format(script, M.dir, sub))
  end
end

-- read a whole file (nil if missing)
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- lab_locked("shared" | "exclusive") -> lab env table. The first call re-executes this test
-- file under flock on LAB_LOCK (so fault tests and config-changing tests do not overlap) and
-- exits with its status; inside the lock it brings the lab up and returns `lab env` as a table.
function M.lab_locked(mode)
  return require("rblab").locked(mode, "ssh lab test")
end

return M
