-- runbook.context: the per-run context. All per-run state lives here, never in globals, so
-- that a later scheduler can run independent steps concurrently without changing runbooks.
--
--   local ctx = context.new{ inventory = "examples/lab.yaml" | table, apply = false, yes = false,
--                            sinks = { fn(event) ... }, runbook = {name=, sha256=}, args = {} }
--
-- Primitive wrappers (lua/runbook/prim/*.lua) add methods to Ctx through install(Ctx); they use
-- the helpers below and call runbook.call for every I/O. Runbooks never get the context itself:
-- they get ctx:public(), a read-only proxy that exposes only the methods in PUBLIC and whatever
-- the wrappers install, so no runbook can change ctx.apply or reach a sink.
-- Depends on: runbook.core, runbook.inventory, runbook.json, runbook.gate.
local core = require "runbook.core"

local M = {}
local Ctx = {}
Ctx.__index = Ctx
M.Ctx = Ctx

-- Wrappers the engine installs; a missing one is skipped (its family is not built yet).
M.PRIMS = { "host", "file", "postfix", "sql", "http", "docker", "dns", "smtp" }

local installed = false
local public_methods = {
  step = true, finding = true, verdict = true, note = true, progress = true, skip = true,
  findings = true, elapsed = true, fix_command = true, read_secret = true, sleep = true,
}

local function install_prims()
  if installed then return end
  installed = true
  local before = {}
  for k in pairs(Ctx) do before[k] = true end
  for _, name in ipairs(M.PRIMS) do
    local ok, mod = pcall(require, "runbook.prim." .. name)
    if ok then
      mod.install(Ctx)
    elseif not tostring(mod):find("module 'runbook.prim." .. name .. "' not found", 1, true) then
      error(mod, 0)
    end
  end
  -- Every method a wrapper adds that does not start with "_" is a primitive runbooks may call.
  for k, v in pairs(Ctx) do
    if not before[k] and type(v) == "function" and not k:find("^_") then public_methods[k] = true end
  end
end

function M.new(opts)
  opts = opts or {}
  install_prims()
  local inv = opts.inventory
  if type(inv) == "string" then
    local err
    inv, err = require("runbook.inventory").load(inv)
    if not inv then error(err, 2) end
  elseif inv == nil then
    inv = require("runbook.inventory").empty()
  end
  local self = setmetatable({
    inventory = inv,
    apply = opts.apply and true or false,
    yes = opts.yes and true or false,
    trace = opts.trace and true or false,
    live = opts.live and true or false,       -- a terminal shows transient progress
    sinks = opts.sinks or {},
    runbook = opts.runbook or { name = "(test)" },
    args = opts.args or {},
    run_id = opts.run_id or core.random_hex(6),
    t0 = core.now(),
    secrets = {},
    cache = {},
    cache_order = {},
    counters = { would = 0, applied = 0, calls = 0 },
    all_findings = {},
    current_step = nil,
    verdict_event = nil,
  }, Ctx)
  for _, s in ipairs(inv._secrets or {}) do self:secret(s) end
  return self
end

-- ---------------------------------------------------------------- helpers for wrappers

function Ctx:host(name)
  if name == "local" then return { name = "local", transport = "local" } end
  local h = self.inventory.hosts[name]
  if not h then error(("unknown host '%s' (not in the inventory)"):format(tostring(name)), 2) end
  return h
end

-- service("ec2/postfix") -> service table with .host and .name
function Ctx:service(spec)
  if type(spec) ~= "string" then error("bad argument #1 to 'service' (\"host/service\" expected)", 2) end
  local hname, sname = spec:match("^([%w_.-]+)/([%w_.-]+)$")
  if not hname then error(("bad service '%s' (\"host/service\" expected)"):format(spec), 2) end
  local h = self:host(hname)
  local s = h.services and h.services[sname]
  if not s then error(("unknown service '%s' on host '%s'"):format(sname, hname), 2) end
  return s
end

function Ctx:timeout(t)
  t = t or self.inventory.defaults.timeout
  local left = core.remaining()
  if left and left < t then t = math.max(left, 0.001) end
  return t
end

function Ctx:connect_timeout()
  return self:timeout(self.inventory.defaults.connect_timeout)
end

-- secret(value): value must never appear in any output; masked as *** everywhere.
function Ctx:secret(value)
  if type(value) == "string" and #value >= 3 and not self.secrets[value] then
    self.secrets[value] = true
    self.secret_list = nil
  end
end

function Ctx:mask(s)
  if type(s) ~= "string" then return s end
  if not self.secret_list then
    local l = {}
    for v in pairs(self.secrets) do l[#l + 1] = v end
    table.sort(l, function(a, b) return #a > #b end)   -- longest first: no partial leaks
    self.secret_list = l
  end
  for _, v in ipairs(self.secret_list) do
    local i = 1
    while true do
      local a, b = s:find(v, i, true)
      if not a then break end
      s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
      i = a + 3
    end
  end
  return s
end

local function mask_deep(self, v, seen)
  local t = type(v)
  if t == "string" then return self:mask(v) end
  if t ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return "(cycle)" end
  seen[v] = true
  local out = setmetatable({}, getmetatable(v))
  for k, x in pairs(v) do out[self:mask(k)] = mask_deep(self, x, seen) end
  seen[v] = nil
  return out
end
Ctx._mask_deep = mask_deep

-- cached(key, open_fn) -> per-run resource, opened once; closed by ctx:close() in reverse order.
function Ctx:cached(key, open_fn)
  local e = self.cache[key]
  if e then return e end
  local h, msg, code = open_fn()
  if h == nil then return nil, msg, code end
  self.cache[key] = h
  self.cache_order[#self.cache_order + 1] = key
  return h
end

function Ctx:close()
  for i = #self.cache_order, 1, -1 do
    local h = self.cache[self.cache_order[i]]
    if type(h) == "userdata" or type(h) == "table" then
      local close = h.close
      if close then pcall(close, h) end
    end
  end
  self.cache, self.cache_order = {}, {}
end

-- emit(event): the only way anything reaches an output. Masks every string first.
function Ctx:emit(ev)
  ev = mask_deep(self, ev)
  ev.schema = 1
  ev.run = self.run_id
  ev.t = math.floor((core.now() - self.t0) * 1000 + 0.5) / 1000
  ev.time = os.date("!%Y-%m-%dT%H:%M:%SZ")
  if ev.step == nil and self.current_step then ev.step = self.current_step.name end
  if ev.transient and not self.live then return end   -- nobody shows "now running" lines
  if ev.event == "call" or ev.event == "would" or ev.event == "write" then
    self.counters.calls = self.counters.calls + 1
  end
  if not self.trace and ev.event == "call" then ev.detail = nil end
  for _, sink in ipairs(self.sinks) do sink(ev, self) end
end

-- confirm(record) -> true when the operator agreed (or --yes).
function Ctx:confirm(record)
  if self.yes then return true end
  if not core.isatty(0) then return false end
  io.stderr:write(("\nAbout to %s on %s:\n  %s\n"):format(record.op, record.host or "local",
    self:mask(record.detail or record.target)))
  local answer = core.prompt("Apply this change? [y/N] ", true, self:timeout(300))
  return answer ~= nil and (answer == "y" or answer == "Y" or answer == "yes")
end

function Ctx:journal(ev)
  local path = self.inventory.audit and self.inventory.audit.journal
  local json = require "runbook.json"
  local rec = mask_deep(self, {
    time = os.date("!%Y-%m-%dT%H:%M:%SZ"), operator = core.user(), from_host = core.hostname(),
    run = self.run_id, runbook = self.runbook.name, runbook_sha256 = self.runbook.sha256,
    args = self.args, host = ev.host, op = ev.op, target = ev.target, detail = ev.detail,
    before = ev.before, after = ev.after, outcome = ev.outcome, error = ev.error,
  })
  return require("runbook.gate").audit(path, rec, json)
end

-- ---------------------------------------------------------------- the runbook-facing API

local SKIP = setmetatable({}, { __tostring = function() return "skip" end })

-- step(name, fn [, title]) -> fn's results. Times the step, records its status; an error inside
-- is contained (status "error") so later checks still run.
function Ctx:step(name, fn, title)
  if type(name) ~= "string" then error("bad argument #1 to 'step' (string expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'step' (function expected)", 2) end
  local parent = self.current_step
  local st = { name = name, title = title, t0 = core.now(), worst = "ok", parent = parent }
  self.current_step = st
  self:emit { event = "step.start", step = name, title = title }
  local res = table.pack(xpcall(fn, function(e)
    if type(e) == "table" and e[1] == SKIP then return e end
    return debug.traceback(tostring(e), 2)
  end, self.proxy or self))
  local status, reason = st.worst, nil
  if not res[1] then
    local left = core.remaining()
    if left and left <= 0 then   -- the run is over: no later step may start
      self:emit { event = "step.end", step = name, title = title, status = "error",
                  reason = "deadline exceeded", ms = (core.now() - st.t0) * 1000 }
      self.current_step = parent
      error(res[2], 0)
    end
    local e = res[2]
    if type(e) == "table" and e[1] == SKIP then
      status, reason = "skipped", e.reason
    else
      status, reason = "error", tostring(e)
      self.step_errors = (self.step_errors or 0) + 1
    end
  end
  self:emit { event = "step.end", step = name, title = title, status = status, reason = reason,
              ms = (core.now() - st.t0) * 1000 }
  self.current_step = parent
  if not res[1] then return nil, reason end
  return table.unpack(res, 2, res.n)
end

function Ctx:skip(reason)
  error({ SKIP, reason = tostring(reason or "skipped") }, 0)
end

local SEVERITY_RANK = { info = 0, ok = 0, warn = 1, fail = 2 }

-- finding{severity=, cause=, hop=, message=, evidence={...}}
function Ctx:finding(f)
  if type(f) ~= "table" or type(f.message) ~= "string" then
    error("bad argument #1 to 'finding' (table with a message expected)", 2)
  end
  local sev = f.severity or "fail"
  if not SEVERITY_RANK[sev] then error("finding: severity must be info, warn or fail", 2) end
  local ev = { event = "finding", severity = sev, cause = f.cause, hop = f.hop, message = f.message,
               evidence = f.evidence, fix = f.fix and self:fix_command(f.fix) or nil }
  self.all_findings[#self.all_findings + 1] = ev
  local st = self.current_step
  while st do
    if SEVERITY_RANK[sev] > SEVERITY_RANK[st.worst] then st.worst = sev == "info" and "ok" or sev end
    st = st.parent
  end
  self:emit(ev)
  return ev
end

function Ctx:findings()
  local out = {}
  for i, f in ipairs(self.all_findings) do out[i] = f end
  return out
end

function Ctx:note(msg)
  self:emit { event = "note", message = tostring(msg) }
end

function Ctx:progress(msg)
  self:emit { event = "progress", message = tostring(msg) }
end

function Ctx:elapsed() return core.now() - self.t0 end

-- sleep(seconds): wait, at most 60 s per call and never past the run deadline.
function Ctx:sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then error("bad argument #1 to 'sleep' (seconds expected)", 2) end
  seconds = math.min(seconds, 60)
  local left = core.remaining()
  if left then seconds = math.min(seconds, math.max(left, 0)) end
  core.sleep(seconds)
end

-- read_secret{env=NAME, file=PATH, prompt=TEXT} -> value | nil, msg, code
-- The one way a runbook obtains a secret (a new user's password): from an environment variable
-- it names, a file readable only by its owner, or a no-echo prompt on the terminal, in that
-- order of what is given. Never from the command line. The value is masked in every output.
function Ctx:read_secret(o)
  if type(o) ~= "table" then error("bad argument #1 to 'read_secret' (table expected)", 2) end
  for k in pairs(o) do
    if k ~= "env" and k ~= "file" and k ~= "prompt" then error("read_secret: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local v, msg, code
  if o.env then
    if not tostring(o.env):match("^[%a_][%w_]*$") then return nil, "bad environment variable name", "usage" end
    v = os.getenv(o.env)
    if not v or v == "" then return nil, ("environment variable %s is not set"):format(o.env), "notfound" end
  elseif o.file then
    v, msg, code = require("runbook.inventory").secret({ name = o.file, password_file = o.file }, "password")
    if not v then return nil, msg, code end
  elseif o.prompt then
    if not core.isatty(0) then return nil, "no terminal to prompt on: give the secret through an environment variable or a 0600 file", "notty" end
    v, msg, code = core.prompt(tostring(o.prompt), false, self:timeout(300))
    if not v then return nil, msg, code end
  else
    return nil, "read_secret needs env, file or prompt", "usage"
  end
  if #v < 1 then return nil, "empty secret", "usage" end
  self:secret(v)
  return v
end

-- shell_word(s) -> s as one word a POSIX shell reads back unchanged (for command lines we show)
local function shell_word(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.shell_word = shell_word

-- fix_command{runbook=, args={...}, apply=bool} -> "runbook run NAME --k v ..."
function Ctx:fix_command(fix)
  if type(fix) == "string" then return fix end
  local parts = { "runbook", "run", shell_word(fix.runbook) }
  local keys = {}
  for k in pairs(fix.args or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = fix.args[k]
    if v == true then parts[#parts + 1] = "--" .. k
    elseif v ~= false then parts[#parts + 1] = "--" .. k .. " " .. shell_word(v) end
  end
  if self.inventory.path then parts[#parts + 1] = "--inventory " .. shell_word(self.inventory.path) end
  return table.concat(parts, " ")
end

local VERDICT_STATUS = { healthy = 0, problem = 1, escalate = 1 }

-- verdict{status=, hop=, cause=, message=, evidence=, fix=} ends the diagnosis.
function Ctx:verdict(v)
  if type(v) ~= "table" or VERDICT_STATUS[v.status] == nil then
    error("bad argument #1 to 'verdict' (status healthy, problem or escalate expected)", 2)
  end
  local ev = { event = "verdict", status = v.status, hop = v.hop, cause = v.cause,
               message = v.message, evidence = v.evidence,
               fix = v.fix and self:fix_command(v.fix) or nil,
               findings = #self.all_findings }
  self.verdict_event = ev
  return ev
end

-- public() -> the read-only proxy a runbook sees.
function Ctx:public()
  if self.proxy then return self.proxy end
  local real = self
  local bound = {}
  local args = setmetatable({}, { __index = self.args, __newindex = function()
    error("ctx.args is read-only", 2) end, __pairs = function() return next, self.args, nil end,
    __metatable = false })
  local proxy = setmetatable({}, {
    __index = function(_, k)
      if k == "args" then return args end
      if k == "run_id" then return real.run_id end
      if k == "apply" then return real.apply end
      if k == "inventory" then return real.inventory_view end
      if not public_methods[k] then return nil end
      local f = bound[k]
      if not f then
        local m = Ctx[k]
        f = function(self_, ...)
          if self_ ~= real.proxy then error(("call it as ctx:%s(...)"):format(k), 2) end
          return m(real, ...)
        end
        bound[k] = f
      end
      return f
    end,
    __newindex = function(_, k) error(("ctx is read-only (cannot set '%s')"):format(tostring(k)), 2) end,
    __metatable = false,
  })
  self.inventory_view = require("runbook.inventory").view(self.inventory)
  self.proxy = proxy
  return proxy
end

return M
