-- doc.t: the runbook API is written down once (lua/runbook/api.lua, LuaLS definitions) and what
-- is written is what exists.
--   * every public ctx method of a real context, with every primitive family installed, has an
--     entry, and every entry is a public method, with the same parameters as the function
--     (names from the entry's signature line; their number from debug.getinfo of the method),
--     and every type name it uses defined in api.lua;
--   * every error code a method's entry names is in ErrCode, every ErrCode is returned by some
--     method, and every code the Lua engine returns (`return nil, msg, "code"` in lua/runbook)
--     is in ErrCode;
--   * the README's and the man page's API sections are exactly what api.lua generates, and
--     tests/tools/gen-api-doc.lua (make doc) rewrites stale copies to them;
--   * `runbook doc`, `runbook doc METHOD`, `runbook doc codes`; an unknown method is exit 2
--     with the nearest names;
--   * the file is never loaded as code by the engine, and loading it anyway does nothing;
--   * controls: each check finds the fault in a copy of api.lua with an entry removed, an
--     entry added, a parameter renamed, a code not in ErrCode, and in a stale README.
local t = require "tap"
local doc = require "runbook.doc"
local context = require "runbook.context"
local rbrun = require "rbrun"

local ROOT = os.getenv("RUNBOOK_ROOT") or "."
-- the binary reads the tree under test (RUNBOOK_HOME), wherever it was built
local rb = rbrun.runner { timeout = 20, env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_HOME = ROOT } }

local function slurp(p)
  local f = assert(io.open(p, "r"))
  local s = f:read("a")
  f:close()
  return s
end

local API_PATH = ROOT .. "/lua/runbook/api.lua"
local text = slurp(API_PATH)
local api, perr = doc.parse(text)
t.ok(api, "api.lua parses" .. (perr and (": " .. perr) or ""))
if not api then t.done() end
t.is(doc.path(), API_PATH, "runbook.doc finds api.lua on the engine's package.path")

-- The public methods of a real context: everything the proxy exposes of Ctx, primitives included.
local ctx = context.new {}
local proxy = ctx:public()
local public = {}
for k, v in pairs(context.Ctx) do
  if type(v) == "function" and proxy[k] ~= nil then public[#public + 1] = k end
end
table.sort(public)
t.ok(#public >= 41, ("a real context exposes %d public methods"):format(#public))
for _, fam in ipairs(context.PRIMS) do
  t.ok(package.loaded["runbook.prim." .. fam], "primitive family " .. fam .. " is installed in this context")
end

local problems = doc.check(api, public)
t.is(#problems, 0, "api.lua documents exactly the public methods, with summaries, examples and known codes")
for _, p in ipairs(problems) do t.diag(p) end

-- The parameter count of each entry is the function's own (self not counted; ... is vararg).
for _, e in ipairs(api.methods) do
  local f = context.Ctx[e.name]
  if f then
    local info = debug.getinfo(f, "u")
    local fixed, vararg = 0, false
    for _, p in ipairs(e.params) do
      if p.name == "..." then vararg = true else fixed = fixed + 1 end
    end
    t.ok(info.nparams - 1 == fixed and info.isvararg == vararg,
      ("ctx:%s takes %d parameter(s)%s as documented (the function: %d%s)"):format(e.name, fixed,
        vararg and " and ..." or "", info.nparams - 1, info.isvararg and " and ..." or ""))
  end
end

-- Fields: each documented one answers on the proxy.
for _, f in ipairs(api.fields) do
  t.ok(proxy[f.name] ~= nil, "ctx." .. f.name .. " exists on the proxy")
end
t.is(#api.fields, 4, "four fields documented (args, inventory, run_id, apply)")

-- Every code the Lua engine returns as `return nil, msg, "code"` is in ErrCode.
do
  local undocumented = {}
  local files = {}
  for _, dir in ipairs { "lua/runbook", "lua/runbook/prim" } do
    local r = require("runbook.exec").run({ "find", ROOT .. "/" .. dir, "-maxdepth", "1", "-name", "*.lua" }, { timeout = 10 })
    for p in r.stdout:gmatch("[^\n]+") do files[#files + 1] = p end
  end
  local n = 0
  for _, p in ipairs(files) do
    for line in slurp(p):gmatch("[^\n]+") do
      local code = line:match('return nil, .*, "([%a_]+)"%s*e?n?d?%s*$')
      if code then
        n = n + 1
        if not api.code_meaning[code] then undocumented[#undocumented + 1] = p:match("[^/]+/[^/]+$") .. ": " .. code end
      end
    end
  end
  t.ok(n >= 20, ("found %d `return nil, msg, code` lines in lua/runbook"):format(n))
  t.is(#undocumented, 0, "every code the Lua engine returns is in ErrCode")
  for _, u in ipairs(undocumented) do t.diag(u) end
end

-- The codes the README used to list, and those the issue named, are all there.
for _, c in ipairs { "timeout", "refused", "unreachable", "auth", "hostkey", "notfound", "nxdomain",
    "servfail", "nodata", "sql", "http", "protocol", "tls", "io", "cap", "closed", "denied", "dryrun",
    "usage", "notty", "declined", "journal" } do
  t.ok(api.code_meaning[c], "ErrCode lists " .. c)
end
t.is(table.concat(api.by_name.read_secret.codes, " "),
  "timeout notfound denied type cap short io usage notty eof", "read_secret's codes, in ErrCode order")
t.is(doc.signature(api.by_name.http),
  "ctx:http(endpoint, method, path [, body [, opts]]) -> response | nil, message, code [, failed]",
  "a signature shows optional parameters and the failure shape")

-- ---------------------------------------------------------------- controls: the checks can fail

local function problems_of(mutated, pub)
  local a, e = doc.parse(mutated)
  if not a then return { e } end
  return doc.check(a, pub or public)
end
local function has(list, pat)
  for _, p in ipairs(list) do if p:find(pat) then return true end end
  return false
end

do -- an entry removed: the public method has no entry
  local a, b = text:find("\n%-%-%-Percent%-encode.-function Ctx:url_escape%(s%) end\n")
  t.ok(a, "control: the url_escape entry is found in api.lua")
  local p = problems_of(text:sub(1, a) .. text:sub(b + 1))
  t.ok(has(p, "public ctx method url_escape has no entry"), "control: a public method without an entry is reported")
end
do -- an entry for a method that does not exist
  local p = problems_of(text .. "\n---Ghost.\n---\n---Example:\n---```lua\n---ctx:ghost()\n---```\nfunction Ctx:ghost() end\n")
  t.ok(has(p, "documents ctx:ghost, which no context exposes"), "control: an entry for no method is reported")
end
do -- a parameter renamed in the signature but not in @param
  local m = text:gsub("function Ctx:sleep%(seconds%) end", "function Ctx:sleep(secs) end")
  t.ok(has(problems_of(m), "ctx:sleep: @param names"), "control: @param names that differ from the signature are reported")
end
do -- a code not in ErrCode
  local m = text:gsub('%-%-%-@return "notfound"|"denied"|"io"|"timeout"|nil code\nfunction Ctx:file_stat',
    '---@return "notfound"|"gone"|nil code\nfunction Ctx:file_stat')
  t.ok(has(problems_of(m), 'ctx:file_stat returns code "gone"'), "control: a code missing from ErrCode is reported")
end
do -- a summary that runs onto a second line (it would be cut in the lists)
  local m = text:gsub("%-%-%-Percent%-encode a string %(for building a query string by hand%)%.\n%-%-%-\n",
    "---Percent-encode a string\n---(for building a query string by hand).\n---\n", 1)
  t.ok(m ~= text and has(problems_of(m), "ctx:url_escape: the summary runs onto a second line"),
    "control: a summary of two lines is reported")
end
do -- a type name api.lua does not define (LuaLS would say undefined-doc-name)
  local m = text:gsub("%-%-%-@return ExecResult|nil result", "---@return ExecResults|nil result", 1)   -- exec's
  t.ok(m ~= text and has(problems_of(m), "ctx:exec uses type ExecResults, which api.lua does not define"),
    "control: an undefined type name is reported")
end
do -- a code nobody returns
  local m = text:gsub('%-%-%-| "eof"', '---| "eof"         # x\n---| "bogus"  ')
  t.ok(has(problems_of(m), '"bogus" is returned by no documented method'), "control: an ErrCode no method returns is reported")
end

-- ---------------------------------------------------------------- the README is generated

local readme = slurp(ROOT .. "/README.md")
local section = doc.markdown(api)
local a = readme:find(doc.BEGIN, 1, true)
local _, b = readme:find(doc.END, 1, true)
t.ok(a and b, "README.md has the api:begin / api:end markers")
if a and b then
  local current = readme:sub(a, b) .. "\n"
  t.ok(current == section, "README's API section is what api.lua generates (run `make doc` after editing api.lua)")
  if current ~= section then
    local i = 1
    while current:sub(i, i) == section:sub(i, i) do i = i + 1 end
    t.diag("first difference at byte " .. i .. ": README has " .. ("%q"):format(current:sub(i, i + 60)))
  end
  for _, e in ipairs(api.methods) do
    if not current:find("`ctx:" .. e.name .. "(", 1, true) then t.ok(false, "README lists ctx:" .. e.name) end
  end
  -- control: a README whose section lacks one line is seen as out of date
  local stale = readme:gsub("| `ctx:sleep%b()` | [^\n]*\n", "", 1)
  t.ok(stale ~= readme and stale:sub(a, (select(2, stale:find(doc.END, 1, true)))) .. "\n" ~= section,
    "control: a README section with one method missing differs from the generated one")
  t.is(doc.splice(readme, section), readme, "splicing the generated section into README changes nothing")
end

-- the man page's RUNBOOK API section, the same way
local man = slurp(ROOT .. "/src/runbook.1")
do
  local ma = man:find(doc.ROFF_BEGIN, 1, true)
  local _, mb = man:find(doc.ROFF_END, ma or 1, true)
  t.ok(ma and mb, "runbook.1 has the api:begin / api:end markers")
  if ma and mb then
    t.ok(man:sub(ma, mb) .. "\n" == doc.roff(api), "runbook.1's RUNBOOK API section is what api.lua generates (make doc)")
  end
  for _, e in ipairs(api.methods) do
    if not man:find("\\fBctx:" .. e.name .. "(", 1, true) then t.ok(false, "runbook.1 lists ctx:" .. e.name) end
  end
  t.like(man, "\n%.B doc\n", "runbook.1 documents the doc command")
end

-- the generator (make doc) rewrites a stale copy of each file back to the committed one
do
  local exec = require "runbook.exec"
  local dir = assert(exec.run({ "mktemp", "-d", "/tmp/runbook-doc-XXXXXX" }, { timeout = 5 })).stdout:gsub("%s+$", "")
  local function write(p, s) local f = assert(io.open(p, "w")); f:write(s); f:close() end
  write(dir .. "/README.md", (readme:gsub("| `ctx:sleep%b()` | [^\n]*\n", "", 1)))
  write(dir .. "/runbook.1", (man:gsub("\\fBctx:sleep%b()[^\n]*\n[^\n]*\n", "", 1)))
  t.ok(slurp(dir .. "/README.md") ~= readme and slurp(dir .. "/runbook.1") ~= man, "control: the stale copies differ")
  local g = rb { "lua", ROOT .. "/tests/tools/gen-api-doc.lua", dir .. "/README.md", dir .. "/runbook.1" }
  t.is(g.status, 0, "tests/tools/gen-api-doc.lua runs")
  t.ok(slurp(dir .. "/README.md") == readme, "it rewrites a stale README to the committed one")
  t.ok(slurp(dir .. "/runbook.1") == man, "it rewrites a stale man page to the committed one")
  exec.run({ "rm", "-rf", "--", dir }, { timeout = 5 })
end

-- ---------------------------------------------------------------- runbook doc

local r = rb { "doc" }
t.is(r.status, 0, "runbook doc: exit 0")
local missing = {}
for _, n in ipairs(public) do
  if not r.stdout:find("\n  " .. n .. " ", 1, true) then missing[#missing + 1] = n end
end
t.is(table.concat(missing, " "), "", "runbook doc lists every public method with its summary")
t.like(r.stdout, "\n  ctx%.args ", "runbook doc lists the fields")

r = rb { "doc", "sql" }
t.is(r.status, 0, "runbook doc sql: exit 0")
t.like(r.stdout, "^ctx:sql%(db, query, %.%.%.%) %-> result | nil, message, code\n", "its signature")
t.like(r.stdout, "\nParameters:\n  db ", "its parameters")
t.like(r.stdout, "\nReturns:\n  result ", "its return values")
t.like(r.stdout, "\n  sql         the database refused the statement", "its error codes, with their meaning")
t.like(r.stdout, "\nExample:\n  local r, msg, code = ctx:sql%(", "its example")
t.is(rb({ "doc", "ctx:sql" }).stdout, r.stdout, "runbook doc ctx:sql is the same entry")

t.like(r.stdout, "\nresult %(SqlResult%) fields:\n  columns ", "it shows the fields of the table it returns")
r = rb { "doc", "ExecResult" }
t.is(r.status, 0, "runbook doc ExecResult: exit 0")
t.like(r.stdout, "\n  status          integer|nil  exit status", "it lists the type's fields")

r = rb { "doc", "stpe" }
t.is(r.status, 2, "runbook doc stpe: exit 2")
t.like(r.stderr, 'no ctx method, field or type "stpe"; did you mean: [^\n]*step', "it names the nearest methods")
t.is(r.stdout, "", "and prints nothing on stdout")
t.like(rb({ "doc" }).stdout, "\nTable types %(runbook doc TYPE%):\n  ArgSpec [^\n]*\n[^\n]*ExecResult ", "runbook doc names the table types")
t.like(rb({ "doc", "SqlResults" }).stderr, "did you mean: SqlResult", "a near miss of a type name finds it")
r = rb { "doc", "postqueue_flsh" }
t.like(r.stderr, "did you mean: postqueue_flush", "a near miss of a long name finds it")
r = rb { "doc", "sql", "x" }
t.is(r.status, 2, "runbook doc with two names: exit 2")

r = rb { "doc", "codes" }
t.is(r.status, 0, "runbook doc codes: exit 0")
for _, c in ipairs(api.codes) do
  if not r.stdout:find("\n  " .. c.name .. " ", 1, true) then t.ok(false, "runbook doc codes lists " .. c.name) end
end
t.like(r.stdout, "\n  notty       a prompt was asked for but there is no terminal", "runbook doc codes says what each means")

r = rb { "doc", "--markdown" }
t.is(r.stdout, section, "runbook doc --markdown prints the README section")

r = rb { "doc", "step" }
t.like(r.stdout, "^ctx:step%(name, fn %[, title%]%) %-> %.%.%.\n", "runbook doc step")

-- ---------------------------------------------------------------- never run

t.is(package.loaded["runbook.api"], nil, "the engine (a context with every primitive) never loads runbook.api")
local env = {}
local chunk = assert(loadfile(API_PATH, "t", env))
local n = select("#", chunk())
t.is(n, 0, "loaded anyway, api.lua returns nothing")
t.is(next(env), nil, "and sets no global")

t.done()
