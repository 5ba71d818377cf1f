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
  local lab = root .. "/tests/lab/lab"
  if not os.getenv("RB_LAB_LOCK_HELD") then
    local _, envout = M.sh(lab .. " env")
    local lock = envout:match("LAB_LOCK=([^\n]+)") or "/tmp/runbook-lab/.testlock"
    local bin = os.getenv("RUNBOOK") or (root .. "/runbook")
    local ok, how, code = os.execute(("mkdir -p \"$(dirname '%s')\" && RB_LAB_LOCK_HELD=1 flock -o %s -E 75 -w 900 '%s' '%s' lua '%s'"):format(
      lock, mode == "exclusive" and "-x" or "-s", lock, bin, arg[0]))
    if not ok and how == "exit" and code == 75 then
      io.stdout:write("1..1\nnot ok 1 - the lab test lock (", lock, ") was busy for 900 s\n")
    end
    os.exit(ok and 0 or (how == "exit" and code or 1))
  end
  local ok, out = M.sh("timeout 600 " .. lab .. " up")
  if not ok then
    io.stdout:write("1..1\nnot ok 1 - the lab comes up\n")
    for l in out:gmatch("[^\n]+") do io.stdout:write("# ", l, "\n") end
    os.exit(1)
  end
  local _, envout = M.sh(lab .. " env")
  local env = {}
  for k, v in envout:gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
  if mode == "exclusive" then
    -- also keep `lab up/fault/heal` (which take the lab's own command lock) from rewriting the
    -- configuration under this test
    local okh, hout = M.sh(("bash %s hold %s/hold %s %s/.lock"):format(script, M.dir, M.pid, env.LAB_DIR))
    if not okh then error("cannot hold the lab lock: " .. hout) end
  end
  return env
end

return M
