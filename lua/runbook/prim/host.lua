-- runbook.prim.host: commands on inventory hosts (local or over SSH) and in their services.
--
--   ctx:exec(host, argv, opts)          -> {stdout, stderr, status, signal, truncated, ms} | nil, msg, code
--   ctx:ssh_exec(host, argv, opts)      same, the host must use transport ssh
--   ctx:service_exec("host/svc", argv, opts)  inside the service's container (docker exec), or on
--                                       the host for `process: true` services. Without stdin
--                                       it goes through runbook.prim.docker's back end (the
--                                       Engine API, locally or through the SSH session) when
--                                       the host has one; else the docker CLI.
--   ctx:exec_stream(target, argv, opts) -> lines (callable: `for line in lines do`), lines:close()
--                                       -> {status, signal, stderr, error, code} | nil, msg, code
--   ctx:df(target, path)                -> {filesystem, size_kb, used_kb, avail_kb, use_pct, mount}
--   ctx:stat(target, path)              -> {owner, user, group, uid, gid, mode="0755", perms, type, size}
--   ctx:tcp_check(from_host, addr, port, opts) -> {ms=, via=} | nil, msg, code   (ssh hosts: a
--                                       direct-tcpip channel; if the server forbids forwarding,
--                                       its own bash /dev/tcp: via = "exec")
-- opts for exec: {timeout=, max_output=, stdin=, read_only=}. An exec is a WRITE (gated by the
-- dry run) unless runbook.gate's read-only table lists its argv (gate.readonly); read_only is
-- accepted for old runbooks and decides nothing. target is "host" or "host/service".
--
-- Remote commands: argv is quoted by runbook.ssh.quote (one function, tested on its own) and
-- prefixed with `timeout -k 2 N`, so the server itself ends a command that outlives its timeout
-- (TERM to its whole process group, KILL 2 s later); our side waits N + 5 s at most and then
-- closes the session. One SSH session per host per run (ctx:cached), reopened if it died.
-- Module functions for other wrappers (postfix, docker), raw I/O without a trace event of their
-- own (call them inside your own runbook.call fn): M.run(ctx, target, argv, opts),
-- M.stream(ctx, target, argv, timeout), M.container(ctx, spec), M.display(argv).
-- Depends on: runbook.ssh, runbook.exec, runbook.net, runbook.call.
local ssh = require "runbook.ssh"
local call = require "runbook.call"

local M = {}

M.KILL_GRACE = 2          -- seconds between TERM and KILL on the remote side
M.SLACK = 3               -- our extra wait beyond timeout + grace before we give up
M.MAX_OUTPUT = 8 * 1024 * 1024
M.MAX_LINE = 1024 * 1024  -- exec_stream splits longer lines

local EXEC_OPTS = { timeout = "number", max_output = "number", stdin = "string", read_only = "boolean" }
local STREAM_OPTS = { timeout = "number", read_only = "boolean" }
local TCP_OPTS = { timeout = "number" }

local function check_opts(opts, allowed, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("bad argument to '%s' (options table expected)"):format(fname), 3) end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
    if type(v) ~= want then error(("%s: option '%s' must be a %s"):format(fname, k, want), 3) end
  end
  if opts.timeout and not (opts.timeout > 0) then error(fname .. ": option 'timeout' must be > 0", 3) end
  return opts
end

local function check_argv(argv, fname)
  if type(argv) ~= "table" or #argv == 0 then
    error(("bad argument #2 to '%s' (argv list expected)"):format(fname), 3)
  end
  for i, a in ipairs(argv) do
    if type(a) ~= "string" then error(("%s: argv[%d] must be a string"):format(fname, i), 3) end
    if a:find("%z") then error(("%s: argv[%d] contains a NUL byte"):format(fname, i), 3) end
  end
end

-- A readable one-line rendering of argv for traces (not for execution).
local function display(argv)
  local out = {}
  for i, a in ipairs(argv) do
    out[i] = a:match("^[%w@%%+=:,./_-]+$") and a or ("'" .. a:gsub("'", "'\\''") .. "'")
  end
  return table.concat(out, " ")
end
M.display = display

local function seconds(t)
  local s = ("%.3f"):format(t):gsub("0+$", ""):gsub("%.$", "")
  return s
end

-- remote_command(argv, timeout) -> the exact string sent to the remote shell.
function M.remote_command(argv, timeout)
  return ("timeout -k %d %s %s"):format(M.KILL_GRACE, seconds(timeout), ssh.quote(argv))
end

-- ---------------------------------------------------------------- ssh sessions

local function session(ctx, hostname)
  local h = ctx:host(hostname)
  ctx._ssh_gen = ctx._ssh_gen or {}
  local gen = ctx._ssh_gen[hostname] or 1
  local s = ctx.cache["ssh:" .. hostname .. "#" .. gen]
  if s and not s:is_open() then
    gen = gen + 1                      -- it died (timeout, lost connection): open a new one
    ctx._ssh_gen[hostname] = gen
  end
  return ctx:cached("ssh:" .. hostname .. "#" .. gen, function()
    local passphrase
    if h.passphrase_env then
      passphrase = os.getenv(h.passphrase_env)
      if not passphrase then
        return nil, ("ssh %s: environment variable %s (key passphrase) is not set"):format(hostname, h.passphrase_env), "auth"
      end
      ctx:secret(passphrase)
    end
    return call(ctx, {
      family = "ssh", op = "connect", host = hostname,
      summary_args = { ("%s@%s:%d"):format(h.user, h.address, h.port or 22) },
      fn = function()
        return ssh.connect {
          host = h.address, port = h.port or 22, user = h.user, key = h.key, passphrase = passphrase,
          agent = h.agent or false, known_hosts = h.known_hosts,
          accept_new = h.accept_new_hostkey or false, timeout = ctx:connect_timeout(),
        }
      end,
    })
  end)
end
M.session = session

-- ---------------------------------------------------------------- raw runners (no trace event)

-- run_host(ctx, hostname, argv, o) -> result | nil, msg, code. o: timeout (effective), max_output, stdin
local function run_host(ctx, hostname, argv, o)
  local h = ctx:host(hostname)
  local timeout = ctx:timeout(o.timeout)
  local max = o.max_output or M.MAX_OUTPUT
  if h.transport == "ssh" then
    local s, msg, code = session(ctx, hostname)
    if not s then return nil, msg, code end
    local r
    r, msg, code = s:exec(M.remote_command(argv, timeout),
      { timeout = timeout + M.KILL_GRACE + M.SLACK, max_output = max, stdin = o.stdin })
    if r and (r.status == 124 or r.status == 137) and r.ms >= timeout * 1000 * 0.95 then
      return nil, ("%s on %s: timed out after %ss (ended on the server by timeout(1))"):format(
        argv[1], hostname, seconds(timeout)), "timeout"
    end
    return r, msg, code
  end
  return require("runbook.exec").run(argv, { timeout = timeout, max_output = max, stdin = o.stdin })
end

local function docker_base(h)
  local d = h.docker or {}
  local argv = {}
  if d.sudo then argv[#argv + 1] = "sudo"; argv[#argv + 1] = "-n" end
  argv[#argv + 1] = d.cli or "docker"
  if d.socket then argv[#argv + 1] = "-H"; argv[#argv + 1] = "unix://" .. d.socket end
  return argv
end

local function append(t, list)
  for _, v in ipairs(list) do t[#t + 1] = v end
  return t
end

-- container(ctx, "host/svc") -> container name | nil, msg, code. A fixed `container:` is used
-- as is; compose services are resolved through their labels by runbook.prim.docker's resolver
-- (cached per run) when that wrapper is present, else here with `docker ps` on the host.
function M.container(ctx, spec)
  local svc = ctx:service(spec)
  if svc.container then return svc.container end
  if not svc.compose then return nil, spec .. " is a process, not a container", "notfound" end
  local okd, dk = pcall(require, "runbook.prim.docker")
  if okd and type(dk) == "table" and dk.resolve then return dk.resolve(ctx, spec) end
  ctx._containers = ctx._containers or {}
  local name = ctx._containers[spec]
  if name then return name end
  local argv = append(docker_base(ctx:host(svc.host)), { "ps", "--filter",
    "label=com.docker.compose.project=" .. svc.compose.project, "--filter",
    "label=com.docker.compose.service=" .. svc.compose.service, "--format", "{{.Names}}" })
  local r, msg, code = run_host(ctx, svc.host, argv, { timeout = ctx:connect_timeout() + 5 })
  if not r then return nil, msg, code end
  if r.status ~= 0 then
    return nil, ("docker ps on %s failed (exit %s): %s"):format(svc.host, tostring(r.status),
      (r.stderr:gsub("%s+$", ""))), "io"
  end
  local names = {}
  for line in r.stdout:gmatch("[^\n]+") do names[#names + 1] = line end
  table.sort(names)
  if #names == 0 then
    return nil, ("no running container for compose service %s/%s on %s"):format(
      svc.compose.project, svc.compose.service, svc.host), "notfound"
  end
  ctx._containers[spec] = names[1]
  return names[1]
end

-- service_argv(ctx, spec, argv, interactive) -> host name, full argv | nil, msg, code
local function service_argv(ctx, spec, argv, interactive)
  local svc = ctx:service(spec)
  if svc.process then return svc.host, argv end
  local name, msg, code = M.container(ctx, spec)
  if not name then return nil, msg, code end
  local full = append(docker_base(ctx:host(svc.host)), { "exec" })
  if interactive then full[#full + 1] = "-i" end
  full[#full + 1] = name
  return svc.host, append(full, argv)
end

-- docker exec's own failures become codes; the command's failures stay in the result.
local function docker_result(r, spec)
  if r and r.status ~= 0 and r.status ~= nil then
    local e = r.stderr
    if e:find("No such container", 1, true) then
      return nil, spec .. ": " .. e:gsub("%s+$", ""), "notfound"
    elseif e:find("is not running", 1, true) or e:find("is paused", 1, true) then
      return nil, spec .. ": " .. e:gsub("%s+$", ""), "closed"
    elseif e:find("Cannot connect to the Docker daemon", 1, true) then
      return nil, spec .. ": " .. e:gsub("%s+$", ""), "refused"
    end
  end
  return r
end

local function run_service(ctx, spec, argv, o)
  if not o.stdin and not ctx:service(spec).process then
    -- the Engine API back end runs it without a docker CLI (false: the CLI must)
    local r, msg, code = require("runbook.prim.docker").exec(ctx, spec, argv,
      { timeout = ctx:timeout(o.timeout), max_output = o.max_output or M.MAX_OUTPUT })
    if r ~= false then return r, msg, code end
  end
  local hostname, full, code = service_argv(ctx, spec, argv, o.stdin ~= nil)
  if not hostname then return nil, full, code end
  local r, msg
  r, msg, code = run_host(ctx, hostname, full, o)
  if not r then return nil, msg, code end
  if full ~= argv then return docker_result(r, spec) end
  return r
end

-- run(ctx, target, argv, o): "host" or "host/service"; raw I/O for other wrappers.
function M.run(ctx, target, argv, o)
  o = o or {}
  if target:find("/", 1, true) then return run_service(ctx, target, argv, o) end
  return run_host(ctx, target, argv, o)
end

local function host_of(ctx, target)
  if target:find("/", 1, true) then return ctx:service(target).host end
  return ctx:host(target).name or target
end

local function exec_summary(r)
  return ("exit %s%s, %d+%d bytes%s"):format(tostring(r.status), r.signal and (" signal " .. r.signal) or "",
    #r.stdout, #r.stderr, r.truncated and " (truncated)" or "")
end

-- ---------------------------------------------------------------- streams

local Lines = {}
Lines.__index = Lines

local function lines_new(src, kind)
  return setmetatable({ src = src, kind = kind, buf = "", done = false }, Lines)
end

function Lines:__call()
  while true do
    local nl = self.buf:find("\n", 1, true)
    if nl then
      local line = self.buf:sub(1, nl - 1)
      self.buf = self.buf:sub(nl + 1)
      return line
    end
    if #self.buf >= M.MAX_LINE then
      local line = self.buf:sub(1, M.MAX_LINE)
      self.buf = self.buf:sub(M.MAX_LINE + 1)
      return line
    end
    if self.done then
      if self.buf ~= "" then
        local line = self.buf
        self.buf = ""
        return line
      end
      return nil
    end
    local chunk, msg, code = self.src:read()
    if chunk then
      self.buf = self.buf .. chunk
    else
      self.done = true
      if msg then self.error, self.code = msg, code end
    end
  end
end

-- close() -> {status=, signal=, stderr=, error=, code=}; idempotent.
function Lines:close()
  if self.result then return self.result end
  local res = {}
  if self.kind == "ssh" then
    local status, stderr, signal = self.src:close()
    res.status, res.stderr, res.signal = status, stderr, signal
  else
    local r = self.src:close()
    if type(r) == "table" then res.status, res.stderr, res.signal = r.status, r.stderr, r.signal end
  end
  res.error, res.code = self.error, self.code
  self.result = res
  return res
end
Lines.__close = Lines.close
Lines.__gc = function(self) if not self.result then pcall(Lines.close, self) end end

-- stream(ctx, target, argv, timeout) -> lines | nil, msg, code: the raw form of exec_stream.
local function open_stream(ctx, target, argv, timeout)
  local hostname, full = host_of(ctx, target), argv
  if target:find("/", 1, true) then
    local code
    hostname, full, code = service_argv(ctx, target, argv, false)
    if not hostname then return nil, full, code end
  end
  local h = ctx:host(hostname)
  if h.transport == "ssh" then
    local s, msg, code = session(ctx, hostname)
    if not s then return nil, msg, code end
    local ch
    ch, msg, code = s:open(M.remote_command(full, timeout), { timeout = timeout + M.KILL_GRACE + M.SLACK })
    if not ch then return nil, msg, code end
    return lines_new(ch, "ssh")
  end
  local exec = require "runbook.exec"
  local p, msg, code = exec.spawn(full, { timeout = timeout })
  if not p then return nil, msg, code end
  return lines_new(p, "local")
end
function M.stream(ctx, target, argv, timeout) return open_stream(ctx, target, argv, ctx:timeout(timeout)) end

-- ---------------------------------------------------------------- parsers

-- df -P -k output -> {filesystem, size_kb, used_kb, avail_kb, use_pct, mount}
function M.parse_df(out)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  if #lines < 2 then return nil end
  local data = table.concat(lines, " ", 2)
  local fs, size, used, avail, pct, mount = data:match("^(%S+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%%%s+(.-)%s*$")
  if not fs then return nil end
  return { filesystem = fs, size_kb = tonumber(size), used_kb = tonumber(used),
           avail_kb = tonumber(avail), use_pct = tonumber(pct), mount = mount }
end

local STAT_TYPES = { ["regular file"] = "file", ["regular empty file"] = "file", directory = "directory",
  ["symbolic link"] = "link", fifo = "fifo", socket = "socket", ["character special file"] = "char",
  ["block special file"] = "block" }

-- stat -c '%u %g %a %s %U %G %F' output -> table
function M.parse_stat(out)
  local uid, gid, mode, size, user, group, ftype = out:match("^(%d+) (%d+) (%x+) (%d+) (%S+) (%S+) ([^\n]+)")
  if not uid then return nil end
  mode = ("%04d"):format(tonumber(mode))
  return { uid = tonumber(uid), gid = tonumber(gid), owner = user, user = user, group = group,
           mode = mode, perms = mode, size = tonumber(size), type = STAT_TYPES[ftype] or ftype }
end

local function failure_code(stderr)
  if stderr:find("No such file or directory", 1, true) then return "notfound" end
  if stderr:find("Permission denied", 1, true) then return "denied" end
  return "io"
end

-- When the server forbids TCP forwarding (AllowTcpForwarding no), ask the server's own bash to
-- connect (`exec 3<>/dev/tcp/ADDR/PORT`, under the usual remote timeout). Address and port are
-- passed as positional arguments, never spliced into the script.
local function remote_tcp_check(ctx, from, addr, port, timeout, denied_msg)
  local t0 = require("runbook.core").now()
  local r, msg, code = run_host(ctx, from, { "bash", "-c", 'exec 3<>"/dev/tcp/$1/$2"', "tcp_check",
    addr, tostring(port) }, { timeout = timeout, max_output = 4096 })
  if not r then return nil, msg, code end
  if r.status == 0 then
    return { ms = (require("runbook.core").now() - t0) * 1000, via = "exec" }
  end
  local e = r.stderr:gsub("%s+$", "")
  if e:find("refused", 1, true) then code = "refused"
  elseif e:find("No route", 1, true) or e:find("unreachable", 1, true) then code = "unreachable"
  elseif r.status == 127 then
    return nil, denied_msg .. "; and no bash on " .. from .. " to test it another way", "denied"
  else code = "io" end
  return nil, ("tcp_check %s:%d from %s: %s"):format(addr, port, from, e), code
end

-- ---------------------------------------------------------------- the ctx methods

function M.install(Ctx)
  function Ctx:exec(hostname, argv, opts)
    check_argv(argv, "exec")
    opts = check_opts(opts, EXEC_OPTS, "exec")
    local h = self:host(hostname)
    return call(self, {
      family = "host", op = "exec", host = hostname, argv = argv,
      summary_args = argv, detail = display(argv), target = hostname .. ": " .. display(argv),
      fn = function() return run_host(self, h.name or hostname, argv, opts) end,
      summarize = exec_summary,
    })
  end

  function Ctx:ssh_exec(hostname, argv, opts)
    check_argv(argv, "ssh_exec")
    opts = check_opts(opts, EXEC_OPTS, "ssh_exec")
    local h = self:host(hostname)
    if h.transport ~= "ssh" then
      error(("ssh_exec: host '%s' uses transport '%s', not ssh"):format(hostname, tostring(h.transport)), 2)
    end
    return call(self, {
      family = "ssh", op = "exec", host = hostname, argv = argv,
      summary_args = argv, detail = M.remote_command(argv, self:timeout(opts.timeout)),
      target = hostname .. ": " .. display(argv),
      fn = function() return run_host(self, hostname, argv, opts) end,
      summarize = exec_summary,
    })
  end

  function Ctx:service_exec(spec, argv, opts)
    check_argv(argv, "service_exec")
    opts = check_opts(opts, EXEC_OPTS, "service_exec")
    local svc = self:service(spec)
    return call(self, {
      family = "service", op = "exec", host = svc.host, argv = argv,
      summary_args = argv, detail = spec .. ": " .. display(argv), target = spec .. ": " .. display(argv),
      fn = function() return run_service(self, spec, argv, opts) end,
      summarize = exec_summary,
    })
  end

  function Ctx:exec_stream(target, argv, opts)
    if type(target) ~= "string" then error("bad argument #1 to 'exec_stream' (host or host/service expected)", 2) end
    check_argv(argv, "exec_stream")
    opts = check_opts(opts, STREAM_OPTS, "exec_stream")
    local hostname = host_of(self, target)
    local timeout = self:timeout(opts.timeout)
    return call(self, {
      family = "host", op = "stream", host = hostname, argv = argv,
      summary_args = argv, detail = target .. ": " .. display(argv), target = target .. ": " .. display(argv),
      fn = function() return open_stream(self, target, argv, timeout) end,
    })
  end

  function Ctx:df(target, path)
    if type(target) ~= "string" then error("bad argument #1 to 'df' (host or host/service expected)", 2) end
    if type(path) ~= "string" or path == "" then error("bad argument #2 to 'df' (path expected)", 2) end
    local argv = { "df", "-P", "-k", "--", path }
    return call(self, {
      family = "host", op = "df", host = host_of(self, target), summary_args = { target, path },
      detail = target .. ": " .. display(argv),
      fn = function()
        local r, msg, code = M.run(self, target, argv, {})
        if not r then return nil, msg, code end
        if r.status ~= 0 then
          return nil, ("df %s on %s: %s"):format(path, target, (r.stderr:gsub("%s+$", ""))), failure_code(r.stderr)
        end
        local v = M.parse_df(r.stdout)
        if not v then return nil, "df: cannot parse: " .. r.stdout:sub(1, 200), "protocol" end
        return v
      end,
      summarize = function(v) return ("%d%% used, %d KiB free on %s"):format(v.use_pct, v.avail_kb, v.mount) end,
    })
  end

  function Ctx:stat(target, path)
    if type(target) ~= "string" then error("bad argument #1 to 'stat' (host or host/service expected)", 2) end
    if type(path) ~= "string" or path == "" then error("bad argument #2 to 'stat' (path expected)", 2) end
    local argv = { "stat", "-c", "%u %g %a %s %U %G %F", "--", path }
    return call(self, {
      family = "host", op = "stat", host = host_of(self, target), summary_args = { target, path },
      detail = target .. ": " .. display(argv),
      fn = function()
        local r, msg, code = M.run(self, target, argv, {})
        if not r then return nil, msg, code end
        if r.status ~= 0 then
          return nil, ("stat %s on %s: %s"):format(path, target, (r.stderr:gsub("%s+$", ""))), failure_code(r.stderr)
        end
        local v = M.parse_stat(r.stdout)
        if not v then return nil, "stat: cannot parse: " .. r.stdout:sub(1, 200), "protocol" end
        return v
      end,
      summarize = function(v) return ("%s %s:%s %s"):format(v.type, v.owner, v.group, v.mode) end,
    })
  end

  -- tcp_check(from_host, addr, port, {timeout=}): does addr:port answer when dialled FROM from_host?
  function Ctx:tcp_check(from, addr, port, opts)
    if type(addr) ~= "string" then error("bad argument #2 to 'tcp_check' (address expected)", 2) end
    if math.type(port) ~= "integer" or port < 1 or port > 65535 then
      error("bad argument #3 to 'tcp_check' (port 1..65535 expected)", 2)
    end
    opts = check_opts(opts, TCP_OPTS, "tcp_check")
    local h = self:host(from)
    local timeout = self:timeout(opts.timeout or self.inventory.defaults.connect_timeout)
    return call(self, {
      family = "host", op = "tcp_check", host = from, summary_args = { from, addr .. ":" .. port },
      detail = ("tcp connect %s:%d from %s"):format(addr, port, from),
      fn = function()
        if h.transport == "ssh" then
          local s, msg, code = session(self, from)
          if not s then return nil, msg, code end
          local r
          r, msg, code = s:tcp_check(addr, port, { timeout = timeout })
          if r then r.via = "direct-tcpip" return r end
          if code ~= "denied" then return nil, msg, code end
          return remote_tcp_check(self, from, addr, port, timeout, msg)
        end
        return require("runbook.net").tcp_check { host = addr, port = port, timeout = timeout }
      end,
      summarize = function(r) return ("open (%.1f ms)"):format(r.ms) end,
    })
  end
end

return M
