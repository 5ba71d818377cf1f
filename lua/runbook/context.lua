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

-- Wrappers the engine installs; a missing one is an error at start (a typo is not "not built").
M.PRIMS = { "host", "file", "postfix", "sql", "http", "docker", "dns", "smtp", "dovecot" }

local installed = false
local public_methods = {
  step = true, finding = true, verdict = true, note = true, progress = true, skip = true,
  findings = true, elapsed = true, fix_command = true, read_secret = true, sleep = true,
  usage_error = true, time = true,
}

local function install_prims()
  if installed then return end
  installed = true
  local before = {}
  for k in pairs(Ctx) do before[k] = true end
  for _, name in ipairs(M.PRIMS) do
    require("runbook.prim." .. name).install(Ctx)
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
    args = M.plain(opts.args or {}, "args"),   -- a private copy: nobody else holds it
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
  -- Every secret the inventory names is registered now, before anything is printed (not at
  -- the first connection). One that cannot be read yet fails later, at its use, with its reason.
  for _, v in ipairs(require("runbook.inventory").secret_values(inv)) do self:secret(v) end
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

-- plain(v, what) -> a deep copy of v made only of plain data: strings, numbers, booleans,
-- functions and tables without metatables (no cycles, at most 32 levels, 100000 entries).
-- Raises otherwise. What runs and what is shown is then the copy, which no runbook code can
-- reach or change after the would-record and the confirmation.
local function plain(v, what, seen, depth, count)
  local t = type(v)
  if t ~= "table" then
    if t == "userdata" or t == "thread" then
      if rawequal(v, require("runbook.json").null) then return v end   -- the SQL/JSON null
      error(("%s: a %s cannot be passed (plain data only)"):format(what, t), 0)
    end
    return v
  end
  if getmetatable(v) ~= nil then
    error(("%s: tables with metatables are refused (plain data only)"):format(what), 0)
  end
  seen, depth, count = seen or {}, depth or 0, count or { 0 }
  if seen[v] then error(("%s: cyclic table refused"):format(what), 0) end
  if depth > 32 then error(("%s: nested deeper than 32 levels"):format(what), 0) end
  seen[v] = true
  local out = {}
  local k, x = next(v)
  while k ~= nil do
    count[1] = count[1] + 1
    if count[1] > 100000 then error(("%s: more than 100000 entries"):format(what), 0) end
    out[plain(k, what, seen, depth + 1, count)] = plain(x, what, seen, depth + 1, count)
    k, x = next(v, k)
  end
  seen[v] = nil
  return out
end
M.plain = plain

-- The forms in which the engine itself shows a string: each one of a secret is masked too
-- (shell quoting as in fix commands and ssh.quote, JSON string escapes, percent-encoding as
-- http.escape does, the SQL parameter display of runbook.prim.sql).
local function encodings(v)
  local out = { v }
  out[#out + 1] = (v:gsub("'", "'\\''"))
  local ok, json = pcall(require, "runbook.json")
  if ok then
    local e = json.encode(v)
    if type(e) == "string" then out[#out + 1] = e:sub(2, -2) end
  end
  out[#out + 1] = (v:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
  out[#out + 1] = (v:gsub("[^%w%-%._~]", function(c) return ("%%%02x"):format(c:byte()) end))
  out[#out + 1] = (v:gsub("[^%w%-%._~ ]", function(c) return ("%%%02X"):format(c:byte()) end):gsub(" ", "+"))
  out[#out + 1] = (v:gsub('[%c"\\\127]', function(c)
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or ("\\x%02X"):format(c:byte())
  end))
  return out
end
M.secret_encodings = encodings

-- secret(value): value must never appear in any output; it and every form the engine shows it
-- in are masked as *** everywhere, whatever its length (a short one masks more than it should;
-- it never leaks). Where the engine reads a secret itself (inventory, read_secret) one shorter
-- than M.SECRET_MIN bytes is refused instead (secret_ok), so the output stays readable.
M.SECRET_MIN = 3
function M.secret_ok(value)
  if type(value) ~= "string" or #value < M.SECRET_MIN then
    return nil, ("secrets shorter than %d bytes are refused (masking them would mangle the output)"):format(M.SECRET_MIN), "usage"
  end
  return true
end

function Ctx:secret(value)
  if type(value) ~= "string" or value == "" or self.secrets[value] then return end
  self.secrets[value] = true
  for _, e in ipairs(encodings(value)) do self.secrets[e] = true end
  self.secret_list = nil
end

-- mask(s) -> s with every registered secret form replaced by ***. Linear in #s for each form:
-- the pieces are collected and joined once (no string rebuilt per occurrence).
function Ctx:mask(s)
  if type(s) ~= "string" then return s end
  if not self.secret_list then
    local l = {}
    for v in pairs(self.secrets) do l[#l + 1] = v end
    table.sort(l, function(a, b) return #a > #b or (#a == #b and a < b) end)   -- longest first
    self.secret_list = l
  end
  local find, sub = string.find, string.sub
  for _, v in ipairs(self.secret_list) do
    local a, b = find(s, v, 1, true)
    if a then
      local parts, n, i = {}, 0, 1
      while a do
        n = n + 1; parts[n] = sub(s, i, a - 1)
        n = n + 1; parts[n] = "***"
        i = b + 1
        a, b = find(s, v, i, true)
      end
      n = n + 1; parts[n] = sub(s, i)
      s = table.concat(parts)
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

-- journal(ev, phase) -> true | nil, msg, code. phase "intent" (before the change) or "outcome".
function Ctx:journal(ev, phase)
  local path = self.inventory.audit and self.inventory.audit.journal
  local json = require "runbook.json"
  if phase == "intent" then self.journal_seq = (self.journal_seq or 0) + 1 end
  local rec = mask_deep(self, {
    phase = phase, change = self.journal_seq,
    time = os.date("!%Y-%m-%dT%H:%M:%SZ"), operator = core.user(), from_host = core.hostname(),
    run = self.run_id, runbook = self.runbook.name, runbook_sha256 = self.runbook.sha256,
    args = self.args, host = ev.host, op = ev.op, target = ev.target, detail = ev.detail,
    before = ev.before, after = ev.after, outcome = ev.outcome, error = ev.error,
  })
  return require("runbook.gate").audit(path, rec, json)
end

-- ---------------------------------------------------------------- the runbook-facing API

local SKIP = setmetatable({}, { __tostring = function() return "skip" end })
local USAGE = setmetatable({}, { __tostring = function() return "usage error" end })

-- usage_error(message): the runbook's arguments are wrong (a value the declared type cannot
-- express: a service missing from the inventory, two options that exclude each other). Ends
-- the run with exit 2 and the message, as a command-line error would, when no primitive has
-- run yet; later it is a runtime error (exit 3): something already ran.
function Ctx:usage_error(msg)
  if type(msg) ~= "string" or msg == "" then error("bad argument #1 to 'usage_error' (message expected)", 2) end
  error({ USAGE, message = msg, calls = self.counters.calls }, 0)
end

-- usage_error_of(err) -> message, calls_before | nil: the usage error a run ended with.
function M.usage_error_of(e)
  if type(e) == "table" and rawequal(rawget(e, 1), USAGE) then return e.message, e.calls end
end

-- step(name, fn [, title]) -> fn's results. Times the step, records its status; an error inside
-- is contained (status "error") so later checks still run.
function Ctx:step(name, fn, title)
  if type(name) ~= "string" then error("bad argument #1 to 'step' (string expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'step' (function expected)", 2) end
  if title ~= nil and type(title) ~= "string" then error("bad argument #3 to 'step' (string expected)", 2) end
  local parent = self.current_step
  local st = { name = name, title = title, t0 = core.now(), worst = "ok", parent = parent }
  self.current_step = st
  self:emit { event = "step.start", step = name, title = title }
  local res = table.pack(xpcall(fn, function(e)
    if type(e) == "table" and (rawequal(rawget(e, 1), SKIP) or rawequal(rawget(e, 1), USAGE)) then return e end
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
    if M.usage_error_of(e) then   -- not contained: the run ends (exit 2)
      self:emit { event = "step.end", step = name, title = title, status = "error",
                  reason = e.message, ms = (core.now() - st.t0) * 1000 }
      self.current_step = parent
      error(e, 0)
    end
    if type(e) == "table" and e[1] == SKIP then
      status, reason = "skipped", e.reason
    else
      status, reason = "error", tostring(e)
      local _, limit = core.memory()
      if e == "not enough memory" and limit and limit > 0 then   -- the engine's cap, not the machine's
        reason = ("memory limit of %d MiB exceeded"):format(limit // (1024 * 1024))
      end
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
-- report_fields(what, v, keys) -> a plain copy of a finding or verdict table, its fields
-- checked. Runs in the runbook's call, so under the run's deadline: what the engine keeps (and
-- emits after the run) is engine data that no runbook metamethod or shared table can reach.
local REPORT_LIMITS = { word = 256, message = 64 * 1024, evidence = 1000 }
local CHECK_STATUS = { ok = true, fail = true, unknown = true, skipped = true }
local function report_fields(what, v, keys)
  local bad = "bad argument #1 to '" .. what .. "'"
  if type(v) ~= "table" then error(bad .. " (table expected)", 0) end
  local c = plain(v, bad)
  for k in next, c do
    if not keys[k] then error(("%s (unknown field '%s')"):format(bad, tostring(k)), 0) end
  end
  local function str(k, max)
    local x = c[k]
    if x ~= nil and (type(x) ~= "string" or #x > max) then
      error(("%s (%s: a string of at most %d bytes expected, got %s)"):format(bad, k, max,
        type(x) == "string" and (#x .. " bytes") or type(x)), 0)
    end
  end
  str("cause", REPORT_LIMITS.word); str("hop", REPORT_LIMITS.word); str("severity", REPORT_LIMITS.word)
  str("status", REPORT_LIMITS.word); str("message", REPORT_LIMITS.message)
  if c.evidence ~= nil then
    local e = c.evidence
    if type(e) ~= "table" or #e > REPORT_LIMITS.evidence then
      error(("%s (evidence: a list of at most %d items expected)"):format(bad, REPORT_LIMITS.evidence), 0)
    end
    for k, item in next, e do
      if math.type(k) ~= "integer" or (type(item) ~= "table" and type(item) ~= "string") then
        error(("%s (evidence: a list of {host=, time=, source=, text=} items expected)"):format(bad), 0)
      end
      if type(item) == "table" then
        for f, x in next, item do
          if f ~= "value" and (type(f) ~= "string" or type(x) == "table"
              or (type(x) == "string" and #x > REPORT_LIMITS.message)) then
            error(("%s (evidence item field '%s': a string or number expected)"):format(bad, tostring(f)), 0)
          end
        end
      end
    end
  end
  if c.checks ~= nil then    -- verdict only: every check the diagnosis ran and how it ended
    local l = c.checks
    if type(l) ~= "table" or #l > REPORT_LIMITS.evidence then
      error(("%s (checks: a list of at most %d items expected)"):format(bad, REPORT_LIMITS.evidence), 0)
    end
    for k, item in next, l do
      if math.type(k) ~= "integer" or type(item) ~= "table" or type(item.name) ~= "string"
          or not CHECK_STATUS[item.status] then
        error(("%s (checks: a list of {name=, status=ok|fail|unknown|skipped, hop=, why=} expected)"):format(bad), 0)
      end
      for f, x in next, item do
        if type(f) ~= "string" or type(x) ~= "string" or #x > REPORT_LIMITS.message then
          error(("%s (checks item field '%s': a string expected)"):format(bad, tostring(f)), 0)
        end
      end
    end
  end
  if c.fix ~= nil then
    local f = c.fix
    if type(f) == "table" then
      if type(f.runbook) ~= "string" or (f.args ~= nil and type(f.args) ~= "table") then
        error(("%s (fix: a command line or {runbook=NAME, args={...}} expected)"):format(bad), 0)
      end
      for k, x in next, f.args or {} do
        if type(k) ~= "string" or type(x) == "table" then
          error(("%s (fix.args: names with plain values expected)"):format(bad), 0)
        end
      end
    elseif type(f) ~= "string" then
      error(("%s (fix: a command line or {runbook=NAME, args={...}} expected)"):format(bad), 0)
    end
  end
  return c
end
local FINDING_KEYS = { severity = true, cause = true, hop = true, message = true, evidence = true, fix = true }
local VERDICT_KEYS = { status = true, cause = true, hop = true, message = true, evidence = true, fix = true,
                      checks = true }

function Ctx:finding(f)
  local ok, c = pcall(report_fields, "finding", f, FINDING_KEYS)
  if not ok then error(c, 2) end
  f = c
  if type(f.message) ~= "string" then
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
  return plain(ev, "finding")   -- a copy: the engine's own record stays out of the runbook's reach
end

function Ctx:findings()
  local out = {}
  for i, f in ipairs(self.all_findings) do out[i] = plain(f, "findings") end
  return out
end

function Ctx:note(msg)
  self:emit { event = "note", message = tostring(msg) }
end

function Ctx:progress(msg)
  self:emit { event = "progress", message = tostring(msg) }
end

function Ctx:elapsed() return core.now() - self.t0 end

-- time() -> wall-clock epoch seconds with sub-second precision (os.time() has whole seconds:
-- a bound taken from it takes in lines written up to a second before it).
function Ctx:time() return core.time() end

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
-- or a file the OPERATOR named (NAME / PATH must be the value of one of the run's arguments,
-- given on the command line), or a no-echo prompt on the terminal. A runbook cannot pick a
-- variable or file on its own (e.g. the inventory's database password). The file must be a
-- regular file of the running user, mode 0600 or stricter, not a symlink. Never the value from
-- the command line. The value is masked in every output.
function Ctx:read_secret(o)
  if type(o) ~= "table" then error("bad argument #1 to 'read_secret' (table expected)", 2) end
  for k in pairs(o) do
    if k ~= "env" and k ~= "file" and k ~= "prompt" then error("read_secret: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local v, msg, code
  local function operator_gave(x)
    for _, a in pairs(self.args) do if a == x then return true end end
    return false
  end
  if o.env then
    if not tostring(o.env):match("^[%a_][%w_]*$") then return nil, "bad environment variable name", "usage" end
    if not operator_gave(o.env) then
      return nil, ("read_secret: environment variable %s was not named by the operator (an argument of this run)"):format(o.env), "denied"
    end
    v = os.getenv(o.env)
    if not v or v == "" then return nil, ("environment variable %s is not set"):format(o.env), "notfound" end
  elseif o.file then
    if not operator_gave(o.file) then
      return nil, ("read_secret: file %s was not named by the operator (an argument of this run)"):format(tostring(o.file)), "denied"
    end
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
  local ok, why, wcode = M.secret_ok(v)
  if not ok then return nil, why, wcode end
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

-- verdict{status=, hop=, cause=, message=, evidence=, fix=, checks=} ends the diagnosis.
-- checks: {name=, status=ok|fail|unknown|skipped, hop=, why=} per check, in the JSON verdict.
function Ctx:verdict(v)
  local ok, c = pcall(report_fields, "verdict", v, VERDICT_KEYS)
  if not ok then error(c, 2) end
  v = c
  if VERDICT_STATUS[v.status] == nil then
    error("bad argument #1 to 'verdict' (status healthy, problem or escalate expected)", 2)
  end
  -- the engine's own guard: "healthy" only when no check the verdict lists failed or could not run
  if v.status == "healthy" then
    for _, c in ipairs(v.checks or {}) do
      if c.status == "fail" or c.status == "unknown" then
        error(("bad argument #1 to 'verdict' (healthy while check '%s' is %s)"):format(c.name, c.status), 2)
      end
    end
  end
  local ev = { event = "verdict", status = v.status, hop = v.hop, cause = v.cause,
               message = v.message, evidence = v.evidence, checks = v.checks,
               fix = v.fix and self:fix_command(v.fix) or nil,
               findings = #self.all_findings }
  self.verdict_event = ev
  return plain(ev, "verdict")   -- a copy: the engine emits its own after the run
end

-- Methods whose arguments are not snapshotted by the proxy: their own code copies them
-- (verdict/finding: the verdict's copy runs under the deadline) or they take none.
local SNAPSHOT_EXEMPT = { verdict = true, finding = true }

-- public() -> the read-only proxy a runbook sees.
function Ctx:public()
  if self.proxy then return self.proxy end
  local real = self
  local bound = {}
  -- ctx.args: a read-only view. pairs() gets a closure over the engine's copy, never the table
  -- itself (next, t, nil would hand it out as the loop state).
  local real_args = self.args
  local args = setmetatable({}, { __index = function(_, k) return real_args[k] end,
    __newindex = function() error("ctx.args is read-only", 2) end,
    __pairs = function()
      local k
      return function() local v; k, v = next(real_args, k); return k, v end, nil, nil
    end,
    __len = function() return #real_args end,
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
          if SNAPSHOT_EXEMPT[k] then return m(real, ...) end
          -- Every argument becomes plain data the runbook cannot reach again: what is shown,
          -- confirmed and journalled is exactly what runs (no __index/__pairs tricks).
          local a = table.pack(...)
          for i = 1, a.n do
            local ok, v = pcall(plain, a[i], ("bad argument #%d to '%s'"):format(i, k))
            if not ok then error(v, 2) end
            a[i] = v
          end
          return m(real, table.unpack(a, 1, a.n))
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
