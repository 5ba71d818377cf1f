-- runbook.prim.docker_cli: the docker CLI back end of runbook.prim.docker, for SSH hosts whose
-- inventory says docker.sudo or whose sshd refuses a stream-local channel to the docker socket.
-- Every command is `[sudo -n] docker [-H unix://SOCK] ...` on the server through the host's SSH
-- session (runbook.prim.host's raw runners, no trace event of their own: the caller's call is
-- the event). Logs arrive with stdout and stderr merged (2>&1 on the server): stream "merged".
--   Cli.new(h, how) -> back end with find/inspect/act/logs/exec and the *_detail strings
--   Cli.is(be) -> true for a CLI back end
-- Codes: notfound refused denied io protocol (and those of ssh).
-- Depends on: runbook.docker (parse_time), runbook.json, runbook.ssh (quote), runbook.prim.host.
local docker = require "runbook.docker"

local function host_mod() return require "runbook.prim.host" end

local Cli = {}
Cli.__index = Cli

-- The docker CLI prefix for an SSH host: [sudo -n] docker [-H unix://SOCK]
local function cli(h, ...)
  local d = h.docker or {}
  local argv = {}
  if d.sudo then argv[#argv + 1] = "sudo"; argv[#argv + 1] = "-n" end
  argv[#argv + 1] = d.cli or "docker"
  if d.socket then argv[#argv + 1] = "-H"; argv[#argv + 1] = "unix://" .. d.socket end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return argv
end

local function display(argv) return host_mod().display(argv) end

-- CLI failures on stderr -> our codes.
local function cli_code(stderr)
  if stderr:find("No such container", 1, true) or stderr:find("No such object", 1, true) then return "notfound" end
  if stderr:find("Cannot connect to the Docker daemon", 1, true) then return "refused" end
  if stderr:find("permission denied", 1, true) or stderr:find("a password is required", 1, true) then return "denied" end
  if stderr:find("command not found", 1, true) or stderr:find("not found", 1, true) then return "notfound" end
  return "io"
end

-- Runs a docker CLI command on an SSH host (raw, no trace event of its own).
local function run_cli(ctx, h, argv, timeout)
  local r, msg, code = host_mod().run(ctx, h.name, argv, { timeout = timeout })
  if not r then return nil, msg, code end
  if r.status ~= 0 then
    local e = (r.stderr or ""):gsub("%s+$", "")
    return nil, ("%s on %s: %s"):format(display(argv), h.name, e ~= "" and e or ("exit " .. tostring(r.status))),
      cli_code(e)
  end
  return r
end

local function ssh_argv(h, container, o)
  local argv = cli(h, "logs", "--timestamps")
  if o.cli_since then argv[#argv + 1] = "--since"; argv[#argv + 1] = o.cli_since end
  if o.cli_until then argv[#argv + 1] = "--until"; argv[#argv + 1] = o.cli_until end
  if o.tail then argv[#argv + 1] = "--tail"; argv[#argv + 1] = tostring(o.tail) end
  argv[#argv + 1] = container
  return argv
end

local function ssh_source(ctx, h, container, o, timeout)
  local argv = ssh_argv(h, container, o)
  -- stdout and stderr of `docker logs` merged on the server: one shell, every word quoted by
  -- runbook.ssh.quote; 2>&1 is the only unquoted text.
  local wrapped = { "sh", "-c", require("runbook.ssh").quote(argv) .. " 2>&1" }
  -- raw I/O under this wrapper's own docker.logs call (a read in the gate's table)
  local lines, msg, code = host_mod().stream(ctx, h.name, wrapped, timeout)
  if not lines then return nil, msg, code end
  local failed_msg, failed_code
  local first = true
  local src = {
    detail = display(argv) .. " 2>&1 on " .. h.name,
    close = function() lines:close() end,
    err = function() return failed_msg, failed_code end,
  }
  function src.next()
    local l = lines()
    if l == nil then
      local r = lines:close()
      if r.error then failed_msg, failed_code = r.error, r.code
      elseif r.status and r.status ~= 0 then
        failed_msg, failed_code = ("docker logs on %s: exit %s"):format(h.name, tostring(r.status)), "io"
      end
      if failed_msg then return nil, failed_msg, failed_code end
      return nil
    end
    l = l:gsub("\r$", "")
    local ts, rest = l:match("^(%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z) (.*)$")
    if not ts then
      ts, rest = l:match("^(%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z)$"), ""
    end
    if first and not ts then
      -- the CLI's own error (no such container, daemon down) arrives merged as the first line
      first = false
      local c = cli_code(l)
      if c ~= "io" or l:find("^Error") then
        lines:close()
        failed_msg, failed_code = ("docker logs on %s: %s"):format(h.name, l), c
        return nil, failed_msg, failed_code
      end
    end
    first = false
    if not ts then return "merged", nil, nil, l end
    return "merged", ts, docker.parse_time(ts), rest
  end
  return src
end

-- The inspect record of a container from `docker inspect` JSON (the CLI back end).
local function cli_inspect(ctx, h, container, timeout)
  local r, msg, code = run_cli(ctx, h, cli(h, "inspect", "--type", "container", container), timeout)
  if not r then return nil, msg, code end
  local json = require "runbook.json"
  local v, jerr = json.decode(r.stdout)
  local c = type(v) == "table" and v[1]
  if type(c) ~= "table" then return nil, "docker inspect: unexpected output: " .. tostring(jerr or r.stdout:sub(1, 200)), "protocol" end
  local st, cfg = c.State or {}, c.Config or {}
  local function str(x) return type(x) == "string" and x or nil end
  local rec = {
    name = str(c.Name) and c.Name:gsub("^/", ""), id = str(c.Id), restart_count = math.tointeger(c.RestartCount) or 0,
    status = str(st.Status), running = st.Running == true, oom_killed = st.OOMKilled == true,
    exit_code = math.tointeger(st.ExitCode) or 0, pid = math.tointeger(st.Pid) or 0, error = str(st.Error),
    health = type(st.Health) == "table" and str(st.Health.Status) or nil,
    started_at = str(st.StartedAt), finished_at = str(st.FinishedAt),
    image = str(cfg.Image), tty = cfg.Tty == true, labels = {},
  }
  for k, x in pairs(type(cfg.Labels) == "table" and cfg.Labels or {}) do
    if type(x) == "string" then rec.labels[k] = x end
  end
  local t = rec.started_at and docker.parse_time(rec.started_at)
  if t and t > 0 then rec.started = t end
  t = rec.finished_at and docker.parse_time(rec.finished_at)
  if t and t > 0 then rec.finished = t end
  return rec
end

-- The docker CLI over the host's SSH session.

function Cli:find(ctx, labels, timeout)
  local argv = cli(self.h, "ps", "-a")
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do argv[#argv + 1] = "--filter"; argv[#argv + 1] = "label=" .. k .. "=" .. labels[k] end
  argv[#argv + 1] = "--format"; argv[#argv + 1] = "{{.Names}}\t{{.State}}"
  local r, msg, code = run_cli(ctx, self.h, argv, timeout)
  if not r then return nil, msg, code end
  local list = {}
  for name, state in r.stdout:gmatch("([^\t\n]+)\t([^\n]*)") do list[#list + 1] = { name = name, state = state } end
  return list
end

function Cli:inspect(ctx, container, timeout) return cli_inspect(ctx, self.h, container, timeout) end

function Cli:act(ctx, verb, container, grace, timeout)
  return run_cli(ctx, self.h, self:act_argv(verb, container, grace), timeout)
end

function Cli:logs(ctx, container, o, timeout) return ssh_source(ctx, self.h, container, o, timeout) end

function Cli:exec() return false end   -- prim/host.lua runs `docker exec` itself

function Cli:act_argv(verb, container, grace)
  return verb == "restart" and cli(self.h, "restart", "-t", tostring(math.floor(grace)), container)
    or cli(self.h, "start", container)
end
function Cli:logs_detail(container, o) return display(ssh_argv(self.h, container, o)) .. " 2>&1 on " .. self.h.name end
function Cli:state_detail(container)
  return display(cli(self.h, "inspect", "--type", "container", container)) .. " on " .. self.h.name
end
function Cli:act_detail(verb, container) return display(self:act_argv(verb, container, 10)) end


function Cli.new(h, how) return setmetatable({ h = h, how = how }, Cli) end
function Cli.is(be) return getmetatable(be) == Cli end

return Cli
