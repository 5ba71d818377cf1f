-- rblab.lua: helpers for the runbook tests against the real mail lab (tests/lua/remedies.t,
-- tests/lua/reports.t, ...): the lab's test lock (every exclusive holder begins from `lab heal
-- all`), `lab` commands, running the binary on the lab
-- inventory, reading the lab's state with docker exec / the mariadb client, the audit journal.
-- Depends on: runbook.exec, runbook.core, runbook.json (the engine's own modules).
local exec = require "runbook.exec"
local core = require "runbook.core"
local json = require "runbook.json"

local M = {}
M.RB = os.getenv("RUNBOOK") or "./runbook"
M.ROOT = os.getenv("RUNBOOK_ROOT") or "."
M.LAB = M.ROOT .. "/tests/lab/lab"
M.INV = M.ROOT .. "/examples/lab.yaml"

local function run(argv, opts)
  opts = opts or {}
  local r, msg = exec.run(argv, { timeout = opts.timeout or 60, cwd = opts.cwd or M.ROOT, stdin = opts.stdin, env = opts.env })
  if not r then return { status = -1, stdout = "", stderr = tostring(msg), all = tostring(msg) } end
  r.all = r.stdout .. r.stderr
  return r
end
M.run = run

-- facts() -> the lab's facts (`tests/lab/lab env`) as a table, without starting anything
function M.facts()
  local env = {}
  for k, v in run({ M.LAB, "env" }).stdout:gmatch("([%w_]+)=([^\n]*)") do env[k] = v end
  return env
end

-- up() -> env table after `lab up` (idempotent), or nil, output when the lab cannot come up
function M.up()
  local r = run({ "timeout", "600", M.LAB, "up" }, { timeout = 620 })
  if r.status ~= 0 then return nil, r.all end
  return M.facts()
end

-- heal_all() -> env table after `lab heal all` (the lab up, every fault healed, drift repaired,
-- one delivery proved end to end), or nil, output. Only for a caller holding LAB_LOCK.
function M.heal_all()
  local r = run({ "env", "LAB_REPAIR=1", "timeout", "600", M.LAB, "heal", "all" }, { timeout = 620 })
  M.heal_output = r.all
  if r.status ~= 0 then return nil, r.all end
  return M.facts()
end

-- active_faults() -> list of the faults the lab's real state shows (`lab faults --active`)
function M.active_faults()
  local list = {}
  for f in run({ M.LAB, "faults", "--active" }, { timeout = 60 }).stdout:gmatch("[^\n]+") do list[#list + 1] = f end
  return list
end

-- locked(mode, label): re-executes the calling test file under flock on the lab's test lock
-- (exclusive for tests that create faults, shared for those that only read), unless a parent
-- already holds it; then returns `lab env` as a table. Exclusive: the test begins from `lab heal
-- all` (healthy, one delivery proved), so a test that failed or was killed before cannot fail
-- this one. Shared: `lab up`, and `lab heal all` only when the real state shows a fault (a
-- leftover: no fault test runs while a shared holder does).
function M.locked(mode, label)
  if not os.getenv("RB_LAB_LOCK_HELD") then
    local envout = run({ M.LAB, "env" }).stdout
    local lock = envout:match("LAB_LOCK=([^\n]+)") or "/tmp/runbook-lab/.testlock"
    exec.run({ "mkdir", "-p", lock:match("^(.*)/") }, { timeout = 5 })
    -- -o: the lock fd is closed in the test, so nothing it starts (a daemon by `lab up`) inherits it
    local argv = { "env", "RB_LAB_LOCK_HELD=" .. (mode == "exclusive" and "exclusive" or "shared"), "flock", "-o",
                   mode == "exclusive" and "-x" or "-s", "-E", "75", "-w", "900", lock, M.RB, "lua", arg[0] }
    local ok, how, code = os.execute(table.concat((function()
      local q = {}
      for i, a in ipairs(argv) do q[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
      return q
    end)(), " "))
    if not ok and how == "exit" and code == 75 then
      io.stdout:write("1..1\nnot ok 1 - the lab test lock (", lock, ") was busy for 900 s\n")
    end
    os.exit(ok and 0 or (how == "exit" and code or 1))
  end
  local env, out
  local t0 = core.now()
  if mode == "exclusive" then
    env, out = M.heal_all()
  else
    -- the real state first (read only, quick): a leftover fault (a stalled daemon included)
    -- is healed rather than waited on
    if #M.active_faults() > 0 then env, out = M.heal_all() else env, out = M.up() end
  end
  if not env then
    io.stdout:write("1..1\nnot ok 1 - the lab comes up healthy (" .. tostring(label) .. ")\n")
    for l in out:gmatch("[^\n]+") do io.stdout:write("# ", l, "\n") end
    os.exit(1)
  end
  io.stderr:write(("# lab ready for %s (%s lock) in %.2f s\n"):format(tostring(label), mode, core.now() - t0))
  M.env = env
  return env
end

-- lab(args...) -> result of tests/lab/lab ARGS
function M.lab(...)
  return run({ M.LAB, ... }, { timeout = 180 })
end

-- rb(args, opts) -> result of the runbook binary on the lab inventory; opts.env adds variables
function M.rb(args, opts)
  opts = opts or {}
  local argv = { M.RB }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv[#argv + 1] = "-i"
  argv[#argv + 1] = M.INV
  local env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = M.ROOT .. "/runbooks" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local r = run(argv, { timeout = opts.timeout or 90, env = env, stdin = opts.stdin })
  r.run_id = r.stdout:match("run (%x+)  ")
  return r
end

-- docker(host, args...) -> result of the docker CLI on the lab host's own dockerd
function M.docker(host, ...)
  local sock = host == "ec2" and M.env.LAB_EC2_DOCKER_SOCK or M.env.LAB_DELL_DOCKER_SOCK
  return run({ "docker", "-H", "unix://" .. sock, ... }, { timeout = 30 })
end

function M.ec2_postconf(name)
  local r = M.docker("ec2", "exec", M.env.LAB_EC2_POSTFIX_CONTAINER, "postconf", "-h", name)
  return (r.stdout:gsub("%s+$", ""))
end

function M.ec2_maincf_sum()
  local r = M.docker("ec2", "exec", M.env.LAB_EC2_POSTFIX_CONTAINER, "sha256sum", "/etc/postfix/main.cf")
  return r.stdout:match("^(%x+)")
end

-- ec2_queue() -> { [queue_id] = record } from postqueue -j in the MX container
function M.ec2_queue()
  local r = M.docker("ec2", "exec", M.env.LAB_EC2_POSTFIX_CONTAINER, "postqueue", "-j")
  local q = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local rec = json.decode(line)
    if type(rec) == "table" and rec.queue_id then q[rec.queue_id] = rec end
  end
  return q
end

-- sql(query) -> tab-separated output of the mariadb client (credentials from the lab's 0600 file)
function M.sql(query)
  local r = run({ "mariadb", "--defaults-extra-file=" .. M.env.LAB_DB_DEFAULTS_FILE, "--batch", "--skip-column-names",
                  M.env.LAB_DB_NAME, "-e", query }, { timeout = 20 })
  return (r.stdout:gsub("%s+$", "")), r
end

function M.owner(path)
  local r = run({ "stat", "-c", "%U:%G %a", path }, { timeout = 5 })
  return (r.stdout:gsub("%s+$", ""))
end

-- audit lines written by one run (the journal is shared by everyone using the lab inventory)
function M.audit(run_id)
  local path = "/tmp/runbook-lab/audit/audit.jsonl"
  local text = exec.readfile(path, 64 * 1024 * 1024) or ""
  local lines, raw = {}, {}
  for l in text:gmatch("[^\n]+") do
    local rec = json.decode(l)
    if type(rec) == "table" and run_id and rec.run == run_id then
      lines[#lines + 1] = rec
      raw[#raw + 1] = l
    end
  end
  return lines, table.concat(raw, "\n"), path
end

M.exists = function(p) return exec.stat(p) ~= nil end
M.sleep = core.sleep
M.now = core.now
M.pid = core.getpid

return M
