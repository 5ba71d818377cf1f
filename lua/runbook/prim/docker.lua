-- runbook.prim.docker: container logs and container state for runbooks.
--
--   ctx:docker_logs("host/svc", {since=, ["until"]=, tail=, grep=, max=, stdout=, stderr=, timeout=})
--       -> logs | nil, msg, code
--     logs is callable: `for rec in logs do ... end`, rec = {host=, service=, container=,
--     stream=, time=, ts=, line=}; logs:err() -> msg, code when the stream failed midway;
--     logs.read / logs.matched counters; logs:close() (also <close>).
--     since/until: a duration before now ("90s", "30m", "1h", "2d"), epoch seconds, or RFC 3339
--     (a record's own ts is an exact bound). tail: number of last lines. grep: a string or a list
--     of strings (plain text, case-insensitive, any of them) or a function(rec) -> bool.
--     With grep the whole window is scanned inside the call, so the trace line says how many
--     lines were read and matched, and only the matches (at most max, default 10000) are kept.
--     Without grep the records stream lazily, one at a time, in bounded memory.
--   ctx:container_state("host/svc") -> {name, id, running, status, exit_code, restart_count,
--       started_at, started, finished_at, image, labels, tty, health, pid, oom_killed}
--   ctx:container_restart("host/svc", {grace=, timeout=}) / ctx:container_start(...)   WRITES:
--       the dry run shows `docker restart CONTAINER on HOST` and the current state; --apply
--       acts, waits until the container runs again (StartedAt changed) and returns the new state.
--   M.resolve(ctx, "host/svc") -> container name | nil, msg, code (compose labels, or the
--       inventory's container:), cached per run; used by prim/host.lua's service_exec too.
--
-- Back ends (M.backend, chosen once per host per run): the Engine API (runbook.docker) on the
-- host's docker socket (hosts.X.docker.socket, default /var/run/docker.sock), on this machine
-- for transport local and on the SSH host for transport ssh, through a stream-local channel of
-- the host's SSH session (no CLI started, one session for everything). The docker CLI over SSH
-- (`docker logs --timestamps ...`, `docker inspect`, `docker restart`, `-H unix://SOCK`,
-- `sudo -n`) remains the fallback for hosts whose inventory says docker.sudo, and for servers
-- that refuse stream-local forwarding (AllowStreamLocalForwarding no, or AllowTcpForwarding no,
-- which OpenSSH applies to these channels too, as the lab's ec2 does) or whose socket the SSH
-- user cannot open: a docker.connect event says which back end a host got, and why, once per
-- run. Through the CLI the container's stdout and stderr arrive merged (2>&1): records then
-- carry stream = "merged". The methods below never look at the transport, only at the back end.
-- M.exec(ctx, "host/svc", argv, o) runs a command in the container through the API back end
-- (prim/host.lua's service commands use it), or returns false when the CLI must do it.
-- Codes: refused denied notfound timeout http protocol io closed (and those of ssh/exec), dryrun.
-- Depends on: runbook.docker, runbook.call, runbook.core, runbook.prim.docker_cli (the CLI back
-- end), runbook.prim.host (SSH sessions).
local docker = require "runbook.docker"
local call = require "runbook.call"
local core = require "runbook.core"

local M = {}

M.DEFAULT_SOCKET = "/var/run/docker.sock"
M.MAX_MATCHES = 10000
M.POLL = 0.1            -- seconds between state checks while waiting for a restart

local LOG_OPTS = { since = true, ["until"] = true, tail = true, grep = true, max = true,
                   stdout = true, stderr = true, timeout = true }
local ACTION_OPTS = { grace = "number", timeout = "number" }

local function host_mod() return require "runbook.prim.host" end
local Cli = require "runbook.prim.docker_cli"

local function check_spec(spec, fname)
  if type(spec) ~= "string" or not spec:find("/", 1, true) then
    error(("bad argument #1 to '%s' (\"host/service\" expected)"):format(fname), 3)
  end
end

local function socket_of(h)
  return h.docker and h.docker.socket or M.DEFAULT_SOCKET
end

-- ---------------------------------------------------------------- resolve

-- Pick the container of a compose service: running ones first, then by name (replica 1 first).
local function pick(list)
  table.sort(list, function(a, b)
    if (a.state == "running") ~= (b.state == "running") then return a.state == "running" end
    return a.name < b.name
  end)
  return list[1]
end

local function lookup(ctx, svc, timeout)
  local be, msg, code = M.backend(ctx, svc.host)
  if not be then return nil, msg, code end
  local project, service = svc.compose.project, svc.compose.service
  local list
  list, msg, code = be:find(ctx, { ["com.docker.compose.project"] = project,
    ["com.docker.compose.service"] = service }, timeout)
  if not list then return nil, msg, code end
  local c = pick(list)
  if not c then
    return nil, ("no container for compose service %s/%s on %s"):format(project, service, svc.host), "notfound"
  end
  return c.name
end

-- resolve(ctx, "host/svc") -> container name | nil, msg, code
function M.resolve(ctx, spec)
  local svc = ctx:service(spec)
  if svc.container then return svc.container end
  if not svc.compose then return nil, spec .. " is not a container (no container: or compose: in the inventory)", "notfound" end
  ctx._containers = ctx._containers or {}
  local name = ctx._containers[spec]
  if name then return name end
  local msg, code
  name, msg, code = call(ctx, {
    family = "docker", op = "resolve", host = svc.host, summary_args = { spec },
    detail = ("containers labelled com.docker.compose.project=%s, com.docker.compose.service=%s on %s")
      :format(svc.compose.project, svc.compose.service, svc.host),
    fn = function() return lookup(ctx, svc, ctx:timeout()) end,
    summarize = function(n) return n end,
  })
  if name then ctx._containers[spec] = name end
  return name, msg, code
end

-- ---------------------------------------------------------------- time arguments

local UNIT = { s = 1, m = 60, h = 3600, d = 86400 }

-- since/until -> value for the API, value for the docker CLI. A duration is counted back from
-- this machine's clock for the API (local daemon) but handed to the CLI as "<N>s", so over SSH it
-- is counted back from the server's own clock (no skew between the hosts matters).
local function time_arg(v, name)
  if v == nil then return nil end
  if type(v) == "number" then
    if v < 0 then error(("docker_logs: option '%s' must not be negative"):format(name), 4) end
    local t = ("%.6f"):format(v)
    return t, t
  end
  if type(v) ~= "string" then error(("docker_logs: option '%s' must be a string or a number"):format(name), 4) end
  local n, unit = v:match("^(%d+%.?%d*)([smhd])$")
  if n then
    local secs = tonumber(n) * UNIT[unit]
    return ("%.6f"):format(core.time() - secs), ("%ds"):format(math.ceil(secs))
  end
  if docker.parse_time(v) or v:match("^%d+%.?%d*$") then return v, v end
  error(("docker_logs: option '%s': expected a duration (30m, 1h), epoch seconds or RFC 3339, got '%s'")
    :format(name, v), 4)
end

local function grep_fn(g)
  if g == nil then return nil end
  if type(g) == "function" then return g end
  if type(g) == "string" then g = { g } end
  if type(g) ~= "table" or #g == 0 then error("docker_logs: option 'grep' must be a string, a list of strings or a function", 4) end
  local needles = {}
  for i, s in ipairs(g) do
    if type(s) ~= "string" or s == "" then error("docker_logs: grep[" .. i .. "] must be a non-empty string", 4) end
    needles[i] = s:lower()
  end
  return function(rec)
    local l = rec.line:lower()
    for _, s in ipairs(needles) do if l:find(s, 1, true) then return true end end
    return false
  end
end

-- ---------------------------------------------------------------- log sources

-- Each source is a function returning stream, ts, epoch, line | nil (end); err() -> msg, code.

local function api_source(ctx, be, container, o, timeout)
  local a, msg, code = be:args(ctx, { container = container, since = o.since, ["until"] = o["until"],
    tail = o.tail, stdout = o.stdout, stderr = o.stderr, timeout = timeout })
  if not a then return nil, msg, code end
  local s
  s, msg, code = docker.logs(a)
  if not s then return nil, msg, code end
  return {
    next = function() return s:next() end,
    close = function() s:close() end,
    err = function() return s:err() end,
  }
end

-- ---------------------------------------------------------------- back ends

-- The Engine API on the host's socket: here, or on an SSH host through its session.
local Api = {}
Api.__index = Api

-- t plus the connection arguments of a runbook.docker call | nil, msg, code
function Api:args(ctx, t)
  t.socket = self.socket
  if self.remote then
    local sess, msg, code = host_mod().session(ctx, self.host)
    if not sess then return nil, msg, code end
    t.ssh = sess
  end
  return t
end

function Api:where()
  return self.remote and (self.socket .. " on " .. self.host .. " through SSH") or self.socket
end

function Api:find(ctx, labels, timeout)
  local a, msg, code = self:args(ctx, { timeout = timeout, all = true, labels = labels })
  if not a then return nil, msg, code end
  return docker.find(a)
end

function Api:inspect(ctx, container, timeout)
  local a, msg, code = self:args(ctx, { container = container, timeout = timeout })
  if not a then return nil, msg, code end
  return docker.inspect(a)
end

function Api:act(ctx, verb, container, grace, timeout)
  local a, msg, code = self:args(ctx, { container = container, timeout = timeout })
  if not a then return nil, msg, code end
  if verb == "restart" then a.grace = grace end
  return (verb == "restart" and docker.restart or docker.start)(a)
end

function Api:logs(ctx, container, o, timeout) return api_source(ctx, self, container, o, timeout) end

function Api:exec(ctx, container, argv, o)
  local a, msg, code = self:args(ctx, { container = container, argv = argv, timeout = o.timeout,
                                       max_output = o.max_output })
  if not a then return nil, msg, code end
  return docker.exec(a)
end

function Api:logs_detail(container, o)
  return ("GET /containers/%s/logs since=%s until=%s tail=%s on %s"):format(container, tostring(o.since),
    tostring(o["until"]), tostring(o.tail or "all"), self:where())
end
function Api:state_detail(container) return ("GET /containers/%s/json on %s"):format(container, self:where()) end
function Api:act_detail(verb, container) return ("POST /containers/%s/%s on %s"):format(container, verb, self:where()) end

-- Which back end an SSH host gets: the API when its sshd opens a stream-local channel to the
-- socket and the daemon answers there; the CLI when the inventory says sudo (the API needs the
-- socket itself) or when the server refuses the channel (code denied: forwarding forbidden, or
-- the socket is not the SSH user's to open). Any other failure (timeout, closed) is the answer.
local function choose(ctx, hostname, h)
  local sock = socket_of(h)
  if (h.docker or {}).sudo then
    return Cli.new(h, "docker CLI over SSH (docker.sudo: the Engine API needs the socket without sudo)")
  end
  local sess, msg, code = host_mod().session(ctx, hostname)
  if not sess then return nil, msg, code end
  local v
  v, msg, code = docker.ping { ssh = sess, socket = sock, timeout = ctx:timeout() }
  if v then
    return setmetatable({ host = hostname, socket = sock, remote = true,
      how = ("Engine API %s at %s through SSH (stream-local forwarding)"):format(v, sock) }, Api)
  end
  if code ~= "denied" then return nil, msg, code end
  -- (OpenSSH answers "connect failed" both when forwarding is off and when it cannot connect)
  return Cli.new(h, ("docker CLI over SSH (fallback: the server refused a stream-local channel to %s:"
    .. " forwarding forbidden (AllowStreamLocalForwarding no, or AllowTcpForwarding no, which OpenSSH"
    .. " applies to it too), or a socket the SSH user cannot open; %s)"):format(sock, msg))
end

-- backend(ctx, hostname) -> back end | nil, msg, code; decided once per host per run. For an
-- SSH host the decision is a docker.connect event of its own, so the trace says it once.
function M.backend(ctx, hostname)
  ctx._docker_be = ctx._docker_be or {}
  local be = ctx._docker_be[hostname]
  if be then return be end
  local h = ctx:host(hostname)
  if h.transport ~= "ssh" then
    be = setmetatable({ host = hostname, socket = socket_of(h), remote = false }, Api)
  else
    local msg, code
    be, msg, code = call(ctx, {
      family = "docker", op = "connect", host = hostname, summary_args = { hostname },
      detail = ("docker on %s: stream-local channel to %s through the SSH session, else the docker CLI")
        :format(hostname, socket_of(h)),
      fn = function() return choose(ctx, hostname, h) end,
      summarize = function(b) return b.how end,
    })
    if not be then return nil, msg, code end
  end
  ctx._docker_be[hostname] = be
  return be
end

-- exec(ctx, "host/svc", argv, o) -> result | nil, msg, code | false (the CLI must run it).
-- o: timeout (effective), max_output. Raw I/O for prim/host.lua (no trace event of its own).
function M.exec(ctx, spec, argv, o)
  local svc = ctx:service(spec)
  local be, msg, code = M.backend(ctx, svc.host)
  if not be then return nil, msg, code end
  if getmetatable(be) ~= Api then return false end
  local container
  container, msg, code = M.resolve(ctx, spec)
  if not container then return nil, msg, code end
  local r
  r, msg, code = be:exec(ctx, container, argv, o)
  if not r then return nil, spec .. ": " .. msg, code end
  if r.status >= 126 and r.stderr == "" and r.stdout:find("^OCI runtime exec failed") then
    r.stderr, r.stdout = r.stdout, ""   -- where `docker exec` puts it: a command that cannot start
  end
  return r
end

-- ---------------------------------------------------------------- Logs objects

local Logs = {}
Logs.__index = Logs

function Logs:__call()
  if self.list then
    self.i = self.i + 1
    return self.list[self.i]
  end
  local st, ts, e, line
  if self.pending then
    st, ts, e, line = table.unpack(self.pending, 1, 4)
    self.pending = nil
  elseif self.done then
    return nil
  else
    st, ts, e, line = self.src.next()
    if st == nil then
      self.done = true
      if ts then self.error, self.code = ts, e end
      self.src.close()
      return nil
    end
  end
  self.read = self.read + 1
  self.matched = self.matched + 1
  return { host = self.host, service = self.service, container = self.container,
           stream = st, ts = ts, time = e, line = line }
end

function Logs:err() return self.error, self.code end
function Logs:close()
  if self.src and not self.done then self.done = true; self.src.close() end
end
Logs.__close = Logs.close

-- ---------------------------------------------------------------- methods

local function state_summary(r)
  if not r then return nil end
  if r.running then return ("running since %s"):format(r.started_at or "?") end
  return ("%s (exit %s) since %s"):format(r.status or "?", tostring(r.exit_code), r.finished_at or "?")
end

local function action(ctx, verb, spec, opts)
  check_spec(spec, "container_" .. verb)
  if opts ~= nil and type(opts) ~= "table" then error("container_" .. verb .. ": options table expected", 3) end
  for k, v in pairs(opts or {}) do
    if not ACTION_OPTS[k] then error(("container_%s: unknown option '%s'"):format(verb, tostring(k)), 3) end
    if type(v) ~= ACTION_OPTS[k] or v < 0 then error(("container_%s: option '%s' must be a non-negative number"):format(verb, k), 3) end
  end
  opts = opts or {}
  local svc = ctx:service(spec)
  local container, msg, code = M.resolve(ctx, spec)
  if not container then return nil, msg, code end
  local be
  be, msg, code = M.backend(ctx, svc.host)
  if not be then return nil, msg, code end
  local timeout = ctx:timeout(opts.timeout or 60)
  local grace = opts.grace or 10
  local detail = ("docker %s %s on %s: %s"):format(verb, container, svc.host, be:act_detail(verb, container))
  local before_state
  return call(ctx, {
    family = "docker", op = verb, host = svc.host, summary_args = { spec, container },
    target = spec .. " (container " .. container .. ")",
    detail = detail,
    before = function()
      local r, m = be:inspect(ctx, container, ctx:timeout())
      before_state = r
      return r and state_summary(r) or m
    end,
    after = "running (" .. verb .. "ed)",
    verify = function()
      local r, m = be:inspect(ctx, container, ctx:timeout())
      return r and state_summary(r) or m
    end,
    fn = function()
      local t0 = core.now()
      local ok, m, c = be:act(ctx, verb, container, grace, timeout)
      if not ok then return nil, m, c end
      -- wait until it runs, with a StartedAt newer than before (a restart really happened)
      local old = before_state and before_state.started_at
      local last
      repeat
        local r, im, ic = be:inspect(ctx, container, ctx:timeout())
        if not r and ic ~= "notfound" then return nil, im, ic end
        last = r
        if r and r.running and (verb == "start" or r.started_at ~= old) then return r end
        core.sleep(M.POLL)
      until core.now() - t0 > timeout
      return nil, ("%s: container %s not running %.0f s after docker %s (%s)"):format(spec, container,
        timeout, verb, state_summary(last) or "gone"), "timeout"
    end,
    summarize = state_summary,
  })
end

function M.install(Ctx)
  function Ctx:docker_logs(spec, opts)
    check_spec(spec, "docker_logs")
    if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to 'docker_logs' (options table expected)", 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if not LOG_OPTS[k] then error(("docker_logs: unknown option '%s'"):format(tostring(k)), 2) end
    end
    if opts.tail ~= nil and (math.type(opts.tail) ~= "integer" or opts.tail < 0) then
      error("docker_logs: option 'tail' must be a non-negative integer", 2)
    end
    if opts.max ~= nil and (math.type(opts.max) ~= "integer" or opts.max < 1) then
      error("docker_logs: option 'max' must be a positive integer", 2)
    end
    for _, k in ipairs { "stdout", "stderr" } do
      if opts[k] ~= nil and type(opts[k]) ~= "boolean" then error(("docker_logs: option '%s' must be a boolean"):format(k), 2) end
    end
    if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
      error("docker_logs: option 'timeout' must be a positive number", 2)
    end
    local o = { tail = opts.tail, stdout = opts.stdout, stderr = opts.stderr }
    o.since, o.cli_since = time_arg(opts.since, "since")
    o["until"], o.cli_until = time_arg(opts["until"], "until")
    local match = grep_fn(opts.grep)
    local max = opts.max or M.MAX_MATCHES
    local svc = self:service(spec)
    local container, msg, code = M.resolve(self, spec)
    if not container then return nil, msg, code end
    local be
    be, msg, code = M.backend(self, svc.host)
    if not be then return nil, msg, code end
    local timeout = self:timeout(opts.timeout)
    local summary = { spec }
    for _, k in ipairs { "since", "until", "tail" } do
      if opts[k] ~= nil then summary[#summary + 1] = k .. "=" .. tostring(opts[k]) end
    end
    if type(opts.grep) == "string" then summary[#summary + 1] = "grep=" .. opts.grep
    elseif opts.grep then summary[#summary + 1] = "grep=(" .. type(opts.grep) .. ")" end
    local detail = be:logs_detail(container, o)

    local logs = setmetatable({ host = svc.host, service = spec, container = container,
                                read = 0, matched = 0 }, Logs)
    return call(self, {
      family = "docker", op = "logs", host = svc.host, summary_args = summary, detail = detail,
      fn = function()
        local src, m, c = be:logs(self, container, o, timeout)
        if not src then return nil, m, c end
        logs.src = src
        if not match then
          -- lazy: records stream one at a time; the first is read now, so that a failure to
          -- start (no such container over SSH, where it arrives as output) is this call's result
          local st, ts, e, line = src.next()
          if st == nil then
            src.close()
            if ts then return nil, ts, e end
            logs.done = true
          else
            logs.pending = { st, ts, e, line }
          end
          return logs
        end
        local list = {}
        while true do
          local st, ts, e, line = src.next()
          if st == nil then
            if ts then src.close(); return nil, ts, e end
            break
          end
          logs.read = logs.read + 1
          local rec = { host = svc.host, service = spec, container = container, stream = st,
                        ts = ts, time = e, line = line }
          if match(rec) then
            logs.matched = logs.matched + 1
            if #list < max then list[#list + 1] = rec end
          end
        end
        src.close()
        logs.list, logs.i, logs.done = list, 0, true
        logs.truncated = logs.matched > #list
        return logs
      end,
      summarize = function(l)
        if not l.list then return "streaming from " .. container end
        return ("read %d lines, matched %d%s"):format(l.read, l.matched,
          l.truncated and (" (kept the first %d)"):format(#l.list) or "")
      end,
    })
  end

  function Ctx:container_state(spec)
    check_spec(spec, "container_state")
    local svc = self:service(spec)
    local container, msg, code = M.resolve(self, spec)
    if not container then return nil, msg, code end
    local be
    be, msg, code = M.backend(self, svc.host)
    if not be then return nil, msg, code end
    return call(self, {
      family = "docker", op = "state", host = svc.host, summary_args = { spec, container },
      detail = be:state_detail(container),
      fn = function() return be:inspect(self, container, self:timeout()) end,
      summarize = state_summary,
    })
  end

  function Ctx:container_restart(spec, opts) return action(self, "restart", spec, opts) end
  function Ctx:container_start(spec, opts) return action(self, "start", spec, opts) end
end

return M
