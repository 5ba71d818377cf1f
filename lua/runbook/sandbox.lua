-- runbook.sandbox: loading runbooks into their own environment.
--
--   sandbox.load(path [, budget]) -> rb | nil, "file:line: message", why
--
-- A runbook is a Lua file that returns its declaration:
--   return {
--     description = "one line",  help = [[longer text]],  kind = "diagnosis" | "remedy",
--     args = { { name = "addr", type = "email", required = true, help = "..." } },
--     needs = { hosts = { "@mx" }, services = { "@mailserver/dovecot" }, sql = { "@database" },
--               http = { "@usermgmt" } },  -- what the inventory must hold: inventory names, or
--                                          -- roles the inventory's mail.* keys resolve
--                                          -- (inventory.ROLES); checked before anything runs
--     hosts = { "@mx", "@mailserver" },    -- the same as needs.hosts (older form)
--     run = function(ctx) ... end,         -- ctx: the read-only per-run proxy (runbook.context)
--   }
-- Any other key is an error (a key the engine does not use must not look declared).
-- It runs with only safe parts of the standard library: no io, no os.execute/getenv/remove,
-- no debug, no package, no C modules, no bytecode (`load` is text-only), no string.dump.
-- Everything it can do to the world goes through ctx's primitives, hence through the gate.
-- Runbooks may `require` a few pure engine libraries and their own helpers in runbooks/lib/;
-- every literal require in the file must name one that exists, checked at load.
-- The environment is strict: reading or assigning a name it does not hold raises, naming it
-- (a misspelt global is an error, not a nil).
--
-- Runbook code runs only under a deadline: the file's top level (and its lib/ helpers) within
-- LOAD_BUDGET seconds, checked and copied into plain engine data while that deadline holds;
-- run() under the run's deadline (cli.lua). No metatable a runbook sets may carry __gc: Lua
-- runs finalizers with hooks off, whenever the collector decides, so a finalizer would be
-- runbook code outside every deadline.
local M = {}

local DECL_KEYS = { description = true, help = true, kind = true, args = true, hosts = true,
                    needs = true, run = true, name = true, examples = true }
M.DECL_KEYS = DECL_KEYS

-- Pure Lua libraries a runbook may require (each must exist: lib_exists below).
M.LIBS = { ["runbook.maillog"] = true }

local function lib_exists(name)
  return package.searchpath(name, package.path) ~= nil
end

local function readonly_copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Past the run deadline no runbook code may catch the deadline error and carry on: the
-- protected-call functions a runbook gets re-raise any error once the deadline has passed.
local core = require "runbook.core"
local function past_deadline()
  local left = core.remaining()
  return left ~= nil and left <= 0
end

local function reraise_past_deadline(...)
  if select(1, ...) == false and past_deadline() then error((select(2, ...)), 0) end
  return ...
end

local safe_coroutine = {}
for k, v in pairs(coroutine) do safe_coroutine[k] = v end
safe_coroutine.resume = function(co, ...) return reraise_past_deadline(coroutine.resume(co, ...)) end
safe_coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local r = table.pack(safe_coroutine.resume(co, ...))
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end
end
M.past_deadline = past_deadline

-- Library calls that run long in C without allocating, so that neither the instruction-count
-- hook (between calls) nor the allocator (inside them) sees the time: each looks at the
-- deadline before it starts, and table.move is bounded (on an empty table it would move up
-- to 2^63 nils without one allocation).
local MOVE_MAX = 1 << 24
local function check_deadline()
  if past_deadline() then error("deadline exceeded", 3) end
end
local safe_table = {}
for k, v in pairs(table) do safe_table[k] = v end
safe_table.sort = function(...) check_deadline(); return table.sort(...) end
safe_table.concat = function(...) check_deadline(); return table.concat(...) end
safe_table.move = function(a1, f, e, t, a2)
  check_deadline()
  local fn, en = tonumber(f), tonumber(e)   -- table.move reads "1e15" and 1e15 as integers too
  if fn and en and en >= fn and en - fn >= MOVE_MAX then
    error(("bad argument #3 to 'move' (at most %d elements in a runbook)"):format(MOVE_MAX), 2)
  end
  return table.move(a1, f, e, t, a2)
end

-- env(dir) -> a fresh environment for one runbook file; dir is where its lib/ helpers live.
function M.env(dir)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = function(...) return reraise_past_deadline(pcall(...)) end,
    xpcall = function(...) return reraise_past_deadline(xpcall(...)) end,
    select = select, tonumber = tonumber, tostring = tostring, type = type,
    rawequal = rawequal, rawlen = rawlen, rawget = rawget,   -- no rawset: it would write into ctx
    setmetatable = function(t, mt)
      if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("setmetatable: __gc is not available to runbooks (a finalizer runs outside the run's deadline)", 2)
      end
      return setmetatable(t, mt)
    end,
    getmetatable = getmetatable,
    string = readonly_copy(string), table = readonly_copy(safe_table), math = readonly_copy(math),
    utf8 = readonly_copy(utf8), coroutine = readonly_copy(safe_coroutine),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
    _VERSION = _VERSION,
  }
  env.string.dump = nil
  env._G = env
  env.load = function(chunk, name, _, e)
    return load(chunk, name, "t", e or env)
  end
  env.print = function() error("print is not available in a runbook: use ctx:note(...)", 2) end
  local loaded = {}
  env.require = function(name)
    if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected)", 2) end
    if loaded[name] then return loaded[name] end
    local why = M.module_problem(name, dir)
    if why then error(why, 2) end
    if M.LIBS[name] then
      loaded[name] = require(name)
      return loaded[name]
    end
    local chunk, err = loadfile(dir .. "/lib/" .. name:match("^lib%.([%w_]+)$") .. ".lua", "t", env)
    if not chunk then error(err, 2) end
    loaded[name] = chunk() or true
    return loaded[name]
  end
  -- Strict: every name a runbook may use is in the table now; any other is a mistake.
  setmetatable(env, {
    __index = function(_, k)
      error(("undeclared global '%s' (a misspelt name? runbooks have no globals but the sandbox's)"):format(tostring(k)), 2)
    end,
    __newindex = function(_, k)
      error(("assignment to undeclared global '%s' (runbooks have no globals: use local)"):format(tostring(k)), 2)
    end,
    __metatable = false,
  })
  return env
end

-- module_problem(name, dir) -> nil when a runbook in dir may require name, else why not and
-- "missing" (no such module: refused at load, wherever the require is) or "denied" (it exists
-- but is not for runbooks: the require raises when it runs; `runbook check` reports it).
function M.module_problem(name, dir)
  if M.LIBS[name] then
    if lib_exists(name) then return nil end
    return ("module '%s' does not exist (allowed, but not installed)"):format(name), "missing"
  end
  local rel = name:match("^lib%.([%w_]+)$")
  if rel and dir then
    local st = require("runbook.exec").stat(dir .. "/lib/" .. rel .. ".lua")
    if st and st.type == "file" then return nil end
    return ("module '%s' does not exist (no %s/lib/%s.lua)"):format(name, dir, rel), "missing"
  end
  local allowed = {}
  for k in pairs(M.LIBS) do allowed[#allowed + 1] = k end
  table.sort(allowed)
  local exists = package.loaded[name] ~= nil or package.preload[name] ~= nil or lib_exists(name)
  return ("module '%s' %s (runbooks may require lib.<name> from the runbook's lib/, %s)")
    :format(name, exists and "is not available to runbooks" or "does not exist", table.concat(allowed, ", ")),
    exists and "denied" or "missing"
end

local function fail_decl(path, msg, line)
  return nil, line and ("%s:%d: %s"):format(path, line, msg) or ("%s: %s"):format(path, msg)
end

-- line_of(text, key) -> the line where `key =` first appears, for messages about a declaration key
local function line_of(text, key)
  if type(key) ~= "string" or not key:match("^[%a_][%w_]*$") then return nil end
  local n = 0
  for l in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if l:match("^%s*" .. key .. "%s*=[^=]") or l:match("[{,]%s*" .. key .. "%s*=[^=]") then return n end
  end
  return nil
end

local function plain_table(v) return type(v) == "table" and debug.getmetatable(v) == nil end

-- list_of_strings(v) -> a fresh plain list | nil
local function list_of_strings(v)
  if not plain_table(v) then return nil end
  local out, n = {}, 0
  for k, x in next, v do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return nil end
    n = n + 1
  end
  for i = 1, n do
    if type(v[i]) ~= "string" then return nil end
    out[i] = v[i]
  end
  return out
end

-- needs(decl, path) -> a fresh { hosts=, services=, sql=, http= } of plain lists | nil, message.
-- hosts = {...} (the older form) joins needs.hosts; a service's host is needed too.
local function needs_of(decl)
  local ROLES = require("runbook.inventory").ROLES
  local KINDS = require("runbook.inventory").NEEDS
  local out = { hosts = {}, services = {}, sql = {}, http = {} }
  local seen = {}
  local function add(kind, v)
    local key = kind .. "\0" .. v
    if not seen[key] then seen[key] = true; out[kind][#out[kind] + 1] = v end
  end
  local function name_ok(kind, v)
    local role = v:match("^@(.*)$")
    if role then
      if ROLES[KINDS[kind]][role] then return true end
      local known = {}
      for r in pairs(ROLES[KINDS[kind]]) do known[#known + 1] = "@" .. r end
      table.sort(known)
      return nil, ("needs.%s: unknown role '%s' (roles: %s)"):format(kind, v, table.concat(known, ", "))
    end
    if v:match("^[%w_][%w_.-]*$") then return true end
    return nil, ("needs.%s: '%s' is not an inventory name or a role"):format(kind, v)
  end
  local n = decl.needs
  if n ~= nil then
    if not plain_table(n) then return nil, "'needs' must be a plain table: { hosts=, services=, sql=, http= }" end
    for k, v in next, n do
      if not KINDS[k] then
        return nil, ("needs: unknown key '%s' (expected hosts, services, sql, http)"):format(tostring(k))
      end
      local list = list_of_strings(v)
      if not list then return nil, ("needs.%s must be a list of strings"):format(k) end
    end
  end
  local hosts = list_of_strings(decl.hosts or {})
  if not hosts then return nil, "'hosts' must be a list of inventory host names" end
  for _, h in ipairs(hosts) do
    local ok, e = name_ok("hosts", h)
    if not ok then return nil, (e:gsub("^needs%.hosts", "hosts")) end
    add("hosts", h)
  end
  for _, kind in ipairs { "hosts", "services", "sql", "http" } do
    for _, v in ipairs(n and list_of_strings(n[kind] or {}) or {}) do
      if kind == "services" then
        local h, svc = v:match("^([^/]+)/([%w_][%w_.-]*)$")
        if not h then return nil, ("needs.services: '%s' is not HOST/SERVICE (e.g. @mailserver/dovecot)"):format(v) end
        local ok, e = name_ok("hosts", h)
        if not ok then return nil, (e:gsub("^needs%.hosts", "needs.services")) end
        add("hosts", h)
      else
        local ok, e = name_ok(kind, v)
        if not ok then return nil, e end
      end
      add(kind, v)
    end
  end
  return out
end

-- Seconds the top level of a runbook file may take: it only declares.
M.LOAD_BUDGET = 10

-- declaration(path, text, name) -> rb | nil, message. Runs the file's top level; everything it
-- returns is checked and copied into plain data (no runbook table, no metamethod survives).
local function declaration(path, text, name)
  local dir = path:match("^(.*)/[^/]*$") or "."
  local env = M.env(dir)
  local chunk, perr = load(text, "@" .. path, "t", env)
  if not chunk then return nil, perr end
  -- every module the file requires, wherever (run() included), must exist now
  for _, r in ipairs(require("runbook.lint").requires(text)) do
    local why, kind = M.module_problem(r.name, dir)
    if kind == "missing" then return fail_decl(path, why, r.line) end
  end
  local decl = chunk()
  if type(decl) ~= "table" then return fail_decl(path, "a runbook must return its declaration table") end
  if not plain_table(decl) then return fail_decl(path, "the declaration must be a plain table (no metatable)") end
  for k in next, decl do
    if not DECL_KEYS[k] then
      local known = {}
      for d in pairs(DECL_KEYS) do known[#known + 1] = d end
      table.sort(known)
      return fail_decl(path, ("unknown declaration key '%s' (the engine knows: %s)"):format(tostring(k),
        table.concat(known, ", ")), line_of(text, k))
    end
  end
  if decl.name ~= nil and (type(decl.name) ~= "string" or not decl.name:match("^[%w_.-]+$")) then
    return fail_decl(path, "'name' must be a word")
  end
  if decl.examples ~= nil then
    decl.examples = list_of_strings(decl.examples)
    if not decl.examples then return fail_decl(path, "'examples' must be a list of strings") end
  end
  if type(decl.description) ~= "string" or decl.description == "" then
    return fail_decl(path, "declaration needs a one-line 'description'")
  end
  if decl.description:find("\n") then return fail_decl(path, "'description' must be one line (use 'help')") end
  if decl.help ~= nil and type(decl.help) ~= "string" then return fail_decl(path, "'help' must be a string") end
  if type(decl.run) ~= "function" then return fail_decl(path, "declaration needs 'run = function(ctx) ... end'") end
  if decl.kind ~= nil and decl.kind ~= "diagnosis" and decl.kind ~= "remedy" and decl.kind ~= "report" then
    return fail_decl(path, "'kind' must be diagnosis, remedy or report")
  end
  local needs, nerr = needs_of(decl)
  if not needs then return fail_decl(path, nerr, line_of(text, decl.needs ~= nil and "needs" or "hosts")) end
  local specs, aerr = require("runbook.args").normalize(decl.args)
  if not specs then return fail_decl(path, aerr) end
  local digest = require("runbook.core").sha256(text)
  return {
    name = decl.name or name, path = path, sha256 = digest, description = decl.description,
    help = decl.help, kind = decl.kind or "diagnosis", args = specs, hosts = needs.hosts, needs = needs,
    examples = decl.examples, run = decl.run, text = text,
  }
end

-- cause_codes(dir) -> set of the cause codes a runbook in dir may name, nil, where they come
-- from | nil, message. The list is lib/causes.lua (LIST: the diagnosis causes) and
-- lib/outcomes.lua (LIST: what remedies and reports end with) beside the runbook, else the
-- installed runbooks' own. Both are runbook code: they run in the sandbox, under the load budget.
function M.cause_codes(dir)
  local exec = require "runbook.exec"
  local function file(d, n)
    local st = exec.stat(d .. "/lib/" .. n .. ".lua")
    return st and st.type == "file" and (d .. "/lib/" .. n .. ".lua") or nil
  end
  local base = dir
  if not file(dir, "causes") then base = core.build().root .. "/runbooks" end
  local set, from = {}, {}
  for _, n in ipairs { "causes", "outcomes" } do
    local p = file(base, n)
    if p then
      from[#from + 1] = p
      local chunk, err = loadfile(p, "t", M.env(base))
      if not chunk then return nil, err end
      local ok, mod, why = core.pcall_deadline(M.LOAD_BUDGET, function(e) return tostring(e) end, chunk)
      if not ok then return nil, ("%s: %s"):format(p, why == "deadline" and "did not load in time" or tostring(mod)) end
      if type(mod) ~= "table" or type(rawget(mod, "LIST")) ~= "table" then
        return nil, ("%s: must return a table with LIST = { {cause = CODE, ...}, ... }"):format(p)
      end
      for _, row in ipairs(mod.LIST) do
        if type(row) == "table" and type(rawget(row, "cause")) == "string" then set[row.cause] = true end
      end
    end
  end
  if #from == 0 then return nil, ("%s: no lib/causes.lua to check cause codes against"):format(dir) end
  return set, nil, table.concat(from, ", ")
end

-- load(path [, budget]) -> rb | nil, message, why. Runs only the file's top level, which only
-- declares, within budget seconds (default and at most LOAD_BUDGET, never past a deadline
-- already armed). why: "deadline" or "memory" when the top level hit that limit.
function M.load(path, budget)
  local exec = require "runbook.exec"
  local text, err = exec.readfile(path, 4 * 1024 * 1024)
  if not text then return nil, err end
  local name = path:match("([^/]+)%.lua$") or path:match("([^/]+)$")
  budget = math.min(budget or M.LOAD_BUDGET, M.LOAD_BUDGET)
  local ok, rb, derr = core.pcall_deadline(budget, function(e) return e end, declaration, path, text, name)
  if not ok then
    local why = derr
    if why == "deadline" then
      return nil, ("%s: the top level did not finish within %gs (a runbook file only declares: put work in run)")
        :format(path, budget), why
    elseif why == "memory" then
      return nil, ("%s: the top level exceeded the memory limit"):format(path), why
    end
    return nil, tostring(rb)
  end
  if not rb then return nil, derr end
  return rb
end

return M
