-- check.t: `runbook check` lints (issue 13 item 6): one line per problem (file:line: message),
-- exit 1 when any, 0 when clean. Unknown globals (read or assigned, anywhere in the source, not
-- only what the top level runs), cause codes the cause list (runbooks/lib/causes.lua and
-- lib/outcomes.lua) does not hold, ctx methods the live context does not have, declaration keys
-- and `needs` entries that do nothing, modules that do not exist. Every shipped runbook passes.
-- Needs no lab: the runbooks are only loaded, never run.
local t = require "tap"
local exec = require "runbook.exec"
local core = require "runbook.core"
local lint = require "runbook.lint"

local ROOT = os.getenv("RUNBOOK_ROOT")
local TMP = "/tmp/runbook-check-test-" .. core.getpid()
exec.run({ "mkdir", "-p", TMP .. "/lib", TMP .. "/own/lib" })

local rb = require("rbrun").runner { timeout = 60,
  env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = TMP .. "/none" } }

local function file(name, body)
  local p = TMP .. "/" .. name
  exec.writefile(p, body)
  return p
end
local function lines(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end
local function esc(s) return (s:gsub("%p", "%%%0")) end

-- ---------------------------------------------------------------- every shipped runbook passes
do
  local names = {}
  local r = exec.run({ "find", ROOT .. "/runbooks", "-maxdepth", "1", "-name", "*.lua", "-type", "f" }, { timeout = 10 })
  for p in r.stdout:gmatch("[^\n]+") do names[#names + 1] = "runbooks/" .. p:match("([^/]+)$") end
  table.sort(names)
  local argv = { "check" }
  for _, n in ipairs(names) do argv[#argv + 1] = n end
  local c = rb(argv)
  if not t.is(c.status, 0, ("runbook check passes for all %d shipped runbooks"):format(#names)) then t.diag(c.all) end
  local oks = 0
  for _, l in ipairs(lines(c.stdout)) do if l:find("^ok ") then oks = oks + 1 end end
  t.is(oks, #names, "one ok line per shipped runbook")
  t.ok(#names >= 10, "the shipped runbooks were found (" .. #names .. ")")
  c = rb { "check", "examples/banner.lua" }
  t.is(c.status, 0, "examples/banner.lua passes")
end

-- ---------------------------------------------------------------- the problems it finds
exec.writefile(TMP .. "/lib/helper.lua", [[
local M = {}
function M.count(list) total = #list; return total end
return M
]])
local bad = file("bad.lua", [[
local helper = require "lib.helper"
local LIMIT = 3
return {
  description = "fixture: one of each problem, and the same done right",
  run = function(ctx)
    local n = tonumber(ctx.args.n or "1") or LIMT
    ctx:sqll("mail", "SELECT 1")
    ctx:sql("mail", "SELECT 1")
    if ctx.argz then return end
    ctx:step("s", function()
      ctx:finding { severity = "fail", cause = "user_mising", message = "x" }
      ctx:finding { severity = "fail", cause = "user_missing", message = "y" }
      ctx:finding { severity = "fail", cause = "message_" .. n, message = "z" }
      ctx:finding { severity = "fail", cause = "not_fixed", message = "an outcome code" }
    end)
    summary = helper.count({ n, LIMIT })
  end,
}
]])
local r = rb { "check", bad }
t.is(r.status, 1, "problems: exit 1")
local want = {
  { 6, "reads the undeclared global 'LIMT'" },
  { 7, "ctx:sqll: the context has no such method" },
  { 9, "ctx%.argz: the context has no such method or field" },
  { 11, "cause 'user_mising' is not in the cause list" },
  { 16, "assigns the undeclared global 'summary'" },
}
for _, w in ipairs(want) do
  t.like(r.stdout, "\n?" .. esc(bad) .. ":" .. w[1] .. ": " .. w[2], ("line %d: %s"):format(w[1], w[2]:gsub("%%", "")))
end
t.like(r.stdout, esc(TMP .. "/lib/helper.lua") .. ":2: assigns the undeclared global 'total'",
  "a lib/ helper the runbook requires is checked too")
local got = lines(r.stdout)
t.is(#got, #want + 1, "nothing else is reported (the correct twins: LIMIT, ctx:sql, user_missing, not_fixed, message_ .. n)")
local shaped = true
for _, l in ipairs(got) do if not l:match("^/[^:]+:%d+: ") then shaped = false end end
t.ok(shaped, "every line is file:line: message")
t.unlike(r.stdout, "^ok ", "a runbook with problems has no ok line")

-- only the top level runs at load: run()'s globals are found statically, not by running it
local quiet = file("quiet.lua", [[
return { description = "fixture: a misspelt global deep in run",
  run = function(ctx) if ctx.args.never then return undefined_thing end end }
]])
r = rb { "check", quiet }
t.is(r.status, 1, "a global in a path the load never runs is found")
t.like(r.stdout, esc(quiet) .. ":2: reads the undeclared global 'undefined_thing'", "... with its line")

-- declaration keys and needs
r = rb { "check", file("key.lua", [[
return {
  description = "fixture: a key the engine does not use",
  fixes = { "user_missing" },
  run = function(ctx) end,
}
]]) }
t.is(r.status, 1, "an unknown declaration key: exit 1")
t.like(r.stdout, "key%.lua:3: unknown declaration key 'fixes'", "... named with its line")
r = rb { "check", file("role.lua", [[
return { description = "fixture: a role nobody resolves",
  needs = { http = { "@usermgmnt" } },
  run = function(ctx) end }
]]) }
t.is(r.status, 1, "an unknown role in needs: exit 1")
t.like(r.stdout, "role%.lua:2: needs%.http: unknown role '@usermgmnt' %(roles: @usermgmt%)", "... naming the roles there are")
r = rb { "check", file("kind.lua", [[
return { description = "fixture: needs a kind of thing the engine does not check",
  needs = { hosts = { "@mx" }, databases = { "mail" } },
  run = function(ctx) end }
]]) }
t.is(r.status, 1, "an unknown kind in needs: exit 1")
t.like(r.stdout, "needs: unknown key 'databases' %(expected hosts, services, sql, http%)", "... saying what it takes")
r = rb { "check", file("svc.lua", [[
return { description = "fixture: a service that is not HOST/SERVICE",
  needs = { services = { "dovecot" } },
  run = function(ctx) end }
]]) }
t.is(r.status, 1, "a service without its host in needs: exit 1")
t.like(r.stdout, "needs%.services: 'dovecot' is not HOST/SERVICE", "... saying so")
local good = file("good.lua", [[
local maillog = require "runbook.maillog"
return { description = "fixture: declares what it needs, uses what exists",
  needs = { hosts = { "@mx", "local" }, services = { "@mailserver/dovecot" }, sql = { "@database" }, http = { "@usermgmt" } },
  run = function(ctx)
    for i, x in ipairs({ 1 }) do ctx:note(i + x) end
    local function again(k) if k > 0 then return again(k - 1) end return maillog end
    local obj = {}
    function obj:m() return self end
    repeat local done = true until done
    goto out
    ::out::
    local v <const> = [==[ a long string naming nothing_here ]==]   -- and a comment naming nothing_either
    ctx:verdict { status = "healthy", cause = "user_missing", message = v .. tostring(again(2)) .. tostring(obj:m()) }
  end }
]])
r = rb { "check", good }
if not t.is(r.status, 0, "control: a clean runbook (locals, loops, methods, labels, long strings) passes") then t.diag(r.all) end
t.like(r.stdout, "^ok   " .. esc(good), "... with its ok line")
r = rb { "check", good, quiet }
t.is(r.status, 1, "one clean and one with a problem: exit 1")
t.like(r.stdout, "ok   " .. esc(good), "... the clean one still says ok")
r = rb { "check" }
t.is(r.status, 2, "check with nothing to check: usage error (exit 2)")
r = rb { "check", TMP .. "/nosuch.lua" }
t.is(r.status, 1, "a runbook that does not exist is a problem (exit 1)")
t.like(r.stdout, "no such file", "... saying so")

-- modules: one that does not exist, one that is not for runbooks
r = rb { "check", file("mods.lua", [[
return { description = "fixture: requires",
  run = function(ctx) local a = require "lib.nosuch"; return a end }
]]) }
t.is(r.status, 1, "a lib/ module that does not exist: exit 1")
t.like(r.stdout, "mods%.lua:2: module 'lib%.nosuch' does not exist", "... file, line, name")
r = rb { "check", file("denied.lua", [[
return { description = "fixture: requires an engine module runbooks may not have",
  run = function(ctx) local x = require("runbook.exec"); return x end }
]]) }
t.is(r.status, 1, "a module runbooks may not require: exit 1")
t.like(r.stdout, "denied%.lua:2: module 'runbook%.exec' is not available to runbooks", "... file, line, name")

-- the cause list beside the runbook is the one that counts
exec.writefile(TMP .. "/own/lib/causes.lua", 'return { LIST = { { cause = "only_here" } } }\n')
local own = TMP .. "/own/own.lua"
exec.writefile(own, [[
return { description = "fixture: its own cause list",
  run = function(ctx)
    ctx:finding { severity = "fail", cause = "only_here", message = "a" }
    ctx:finding { severity = "fail", cause = "user_missing", message = "b" }
  end }
]])
r = rb { "check", own }
t.is(r.status, 1, "a runbook with its own lib/causes.lua is checked against that list")
t.like(r.stdout, "own%.lua:4: cause 'user_missing' is not in the cause list %(" .. esc(TMP .. "/own/lib/causes.lua"), "... a code only the shipped list has is refused")
t.unlike(r.stdout, "only_here", "... and its own code is accepted")

-- a cause table row naming an unknown cause stops undelivered at load (its own validation)
do
  local dir = TMP .. "/und"
  exec.run({ "cp", "-r", ROOT .. "/runbooks", dir })
  local src = assert(exec.readfile(dir .. "/lib/replies.lua"))
  local changed, n = src:gsub('causes = { "relay_domain_missing" }', 'causes = { "relay_domain_mising" }', 1)
  exec.writefile(dir .. "/lib/replies.lua", changed)
  r = rb { "check", dir .. "/undelivered.lua" }
  t.is(n, 1, "(the reply table was edited)")
  t.is(r.status, 1, "undelivered with a reply row naming an unknown cause: exit 1")
  t.like(r.stdout, "relay_domain_mising", "... naming it")
end

-- ---------------------------------------------------------------- the lint itself (runbook.lint)
local function problems(src, globals)
  local g = globals or { ipairs = true, tostring = true, string = true }
  return lint.file("x.lua", src, { globals = g })
end
local p = problems("local a = 1\nlocal function f(x) return f(x) + a end\nreturn f")
t.is(#p, 0, "lint: locals, a recursive local function, parameters")
p = problems("for k, v in ipairs({}) do tostring(k, v) end\nreturn k")
t.is(#p, 1, "lint: for variables end with the loop")
t.is(p[1] and p[1].line, 2, "lint: ... the use after the loop is reported on its line")
p = problems("local t = { alpha = 1, [\"b\"] = 2 }\nreturn t.alpha, t:beta(), string.format")
t.is(#p, 0, "lint: table keys, fields and methods are not globals")
p = problems("do local inner = 1 end\nreturn inner")
t.is(#p, 1, "lint: a do block's local ends with it")
p = problems("if x then local y = 1 elseif y then end")
t.is(#p, 2, "lint: an if's locals end at elseif (x and y reported)")
p = problems("local s = 'a\\'b' .. \"c\\\"d\" -- undefined_in_comment\n--[[ also_not\n a global ]] return s")
t.is(#p, 0, "lint: strings with escapes and comments hold no names")
p = problems("x = 1")
t.like(p[1] and p[1].message or "", "assigns the undeclared global 'x'", "lint: an assignment says assigns")
p = problems("function g() end")
t.like(p[1] and p[1].message or "", "assigns the undeclared global 'g'", "lint: a global function statement is an assignment")
local req = lint.requires('local a = require "lib.a"\nlocal b = require("runbook.maillog")\nlocal c = x.require "no"')
t.is(#req, 2, "lint.requires: literal requires, not a field named require")
t.is(req[2] and req[2].line, 2, "lint.requires: with their lines")

exec.run({ "rm", "-rf", TMP })
t.done()
