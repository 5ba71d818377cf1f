-- needs.t: runbooks declare what they need (issue 13 item 5): hosts, services, SQL databases
-- and HTTP endpoints, by inventory name or by a role the inventory's mail.* keys resolve. The
-- engine checks the inventory after the arguments and before anything runs: exit 2, one line
-- per missing thing naming the inventory key to add, no event, no primitive. Before, user-enable
-- on an inventory without http.usermgmt started and died with a Lua stack trace (exit 3).
-- Needs no lab: the inventories are of the lab's shape in a temp dir; where a run does start
-- (the controls), its servers are closed ports on 127.0.0.1.
local t = require "tap"
local exec = require "runbook.exec"
local core = require "runbook.core"

local TMP = "/tmp/runbook-needs-test-" .. core.getpid()
exec.run({ "mkdir", "-p", TMP })
local rb = require("rbrun").runner { timeout = 30,
  env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = TMP .. "/none" } }

local HOSTS = require("rbrun").LAB_SHAPE_HOSTS
-- nothing listens on 127.0.0.1:9 (discard) here: a run that gets that far fails fast
local DB = "databases:\n  mail: { host: 127.0.0.1, port: 9, user: u, database: d }\n"
local HTTP = "http:\n  usermgmt: { base_url: \"http://127.0.0.1:9\" }\n"
local MAIL = "mail: { mx_host: ec2, mailserver_host: dell }\n"
local function inventory(name, text)
  local p = TMP .. "/" .. name .. ".yaml"
  exec.writefile(p, text, tonumber("600", 8))
  return p
end
local function count_lines(s, pattern)
  local n = 0
  for l in s:gmatch("[^\n]+") do if l:find(pattern) then n = n + 1 end end
  return n
end

-- ---------------------------------------------------------------- the issue's case: user-enable
local no_http = inventory("no_http", HOSTS .. DB .. MAIL)
local r = rb { "run", "user-enable", "--addr", "info@example.test", "-i", no_http, "--format", "json" }
t.is(r.status, 2, "user-enable without http.usermgmt: a usage error (exit 2), not a crash (exit 3)")
t.like(r.stderr, "runbook user%-enable needs the HTTP endpoint 'usermgmt' %(the User Management API, mail%.usermgmt, default usermgmt%): add http%.usermgmt",
  "... naming the endpoint and the inventory key to add")
t.like(r.stderr, "no_http%.yaml", "... and the inventory")
t.unlike(r.all, "stack traceback", "... no Lua stack trace")
t.is(#r.events, 0, "... before anything started (no event at all)")

local bare = inventory("bare", HOSTS .. MAIL)
r = rb { "run", "user-enable", "--addr", "info@example.test", "-i", bare }
t.is(r.status, 2, "without the database and the endpoint: exit 2")
t.is(count_lines(r.stderr, "needs "), 2, "... one line per missing thing")
t.like(r.stderr, "needs the SQL database 'mail' %(the mail database, mail%.database, default mail%): add databases%.mail", "... the database, with its key")
t.like(r.stderr, "needs the HTTP endpoint 'usermgmt'", "... the endpoint")

-- the role follows the inventory's mail.* key
local renamed = inventory("renamed", HOSTS .. DB .. MAIL:gsub(" }", ", usermgmt: api2 }") ..
  "http:\n  api2: { base_url: \"http://127.0.0.1:9\" }\n")
r = rb { "run", "user-enable", "--addr", "info@example.test", "-i", renamed, "--format", "json" }
t.isnt(r.status, 2, "control: mail.usermgmt names http.api2, which exists: the needs check passes")
t.is(r.events[1] and r.events[1].event, "run.start", "control: ... and the run starts")
local full = inventory("full", HOSTS .. DB .. HTTP .. MAIL)
r = rb { "run", "user-enable", "--addr", "info@example.test", "-i", full, "--format", "json" }
t.is(r.events[1] and r.events[1].event, "run.start", "control: with databases.mail and http.usermgmt user-enable starts")
local bad_role = inventory("bad_role", HOSTS .. DB .. HTTP .. MAIL:gsub(" }", ", usermgmt: api2 }"))
r = rb { "run", "user-enable", "--addr", "info@example.test", "-i", bad_role }
t.is(r.status, 2, "mail.usermgmt names an endpoint that is not there: exit 2")
t.like(r.stderr, "needs the HTTP endpoint 'api2' .*: add http%.api2", "... naming the key the role resolves to")

-- ---------------------------------------------------------------- services and host roles
local no_dovecot = inventory("no_dovecot", (HOSTS:gsub("      dovecot:[^\n]*\n", "")) .. MAIL)
r = rb { "run", "maildir-fix", "--domain", "example.test", "-i", no_dovecot, "--format", "json" }
t.is(r.status, 2, "maildir-fix with no Dovecot on the mail server: exit 2")
t.like(r.stderr, "needs service dell/dovecot: add hosts%.dell%.services%.dovecot", "... naming the service's key")
t.is(#r.events, 0, "... nothing started")
for _, case in ipairs {
  { "message-move", "--addr", "info@example.test", "--message-id", "<a@b.test>" },
  { "auth-cache-flush", "--addr", "info@example.test" },
} do
  local argv = { "run" }
  for _, a in ipairs(case) do argv[#argv + 1] = a end
  for _, a in ipairs { "-i", no_dovecot, "--format", "json" } do argv[#argv + 1] = a end
  r = rb(argv)
  t.is(r.status, 2, case[1] .. " with no Dovecot on the mail server: exit 2 before anything runs")
  t.like(r.stderr, "needs service dell/dovecot: add hosts%.dell%.services%.dovecot", "... naming the service's key")
  t.is(#r.events, 0, "... nothing started")
end
r = rb { "run", "auth-cache-flush", "--addr", "info@example.test", "-i", no_dovecot }
t.like(r.stderr, "needs the SQL database 'mail'", "auth-cache-flush also needs the mail database")
r = rb { "run", "maildir-fix", "--domain", "example.test", "-i", inventory("no_ms", HOSTS .. "mail: { mx_host: ec2 }\n") }
t.is(r.status, 2, "maildir-fix with mail.mailserver_host unset: exit 2")
t.like(r.stderr, "needs the mail server host %(mail%.mailserver_host is not set%): set mail%.mailserver_host", "... the role's key")
t.is(count_lines(r.stderr, "needs "), 1, "... one line: the service on that host is not listed again")
r = rb { "run", "user-enable", "--addr", "info@example.test" }
t.is(r.status, 2, "no inventory at all: exit 2")
t.like(r.stderr, "inventory none: %-%-inventory FILE", "... saying none was given")
t.is(count_lines(r.stderr, "needs "), 3, "... the host role, the database and the endpoint")

-- ---------------------------------------------------------------- a runbook's own declaration
local own = TMP .. "/own.lua"
exec.writefile(own, [[
return { description = "fixture: needs literal names and roles",
  needs = { hosts = { "dell" }, services = { "@mx/postfix" }, sql = { "reports" }, http = { "@usermgmt" } },
  run = function(ctx) ctx:verdict { status = "healthy", message = "ran" } end }
]])
r = rb { "run", own, "-i", full }
t.is(r.status, 2, "a literal database name the inventory lacks: exit 2")
t.like(r.stderr, "needs the SQL database 'reports': add databases%.reports", "... naming databases.reports")
t.is(count_lines(r.stderr, "needs "), 1, "... and only that")
local with_reports = inventory("with_reports", HOSTS .. HTTP .. MAIL ..
  "databases:\n  mail: { host: 127.0.0.1, port: 9, user: u, database: d }\n  reports: { host: 127.0.0.1, port: 9, user: u, database: r }\n")
r = rb { "run", own, "-i", with_reports }
t.is(r.status, 0, "control: everything it needs is there: it runs (exit 0)")
r = rb { "describe", own }
t.like(r.stdout, "needs sql: reports", "describe lists what the runbook needs")
t.like(r.stdout, "needs hosts: dell, @mx", "... hosts include the services' hosts")

do
  local l = rb({ "list", "--format", "json" }, { env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = TMP } })
  local rec
  for line in l.stdout:gmatch("[^\n]+") do
    local x = require("runbook.json").decode(line)
    if type(x) == "table" and x.name == "own" then rec = x end
  end
  t.ok(rec and rec.needs and rec.needs.sql and rec.needs.sql[1] == "reports" and rec.needs.http[1] == "@usermgmt",
    "list --format json carries what each runbook needs")
end

-- the needs check comes after the arguments: a bad argument is reported first, as before
r = rb { "run", "user-enable", "--addr", "not-an-address", "-i", bare }
t.is(r.status, 2, "a bad argument with a lacking inventory: exit 2")
t.like(r.stderr, "not a mail address", "... the argument error is the one reported")
t.unlike(r.stderr, "needs ", "... before the inventory is looked at")

-- ---------------------------------------------------------------- ctx:usage_error before anything runs
local refuse = TMP .. "/refuse.lua"
exec.writefile(refuse, [[
return { description = "fixture: refuses its own argument combination",
  args = { { name = "a", type = "boolean", help = "a" }, { name = "b", type = "boolean", help = "b" } },
  run = function(ctx)
    if ctx.args.a and ctx.args.b then ctx:usage_error("--a and --b exclude each other") end
    ctx:verdict { status = "healthy", message = "fine" }
  end }
]])
r = rb { "run", refuse, "--a", "--b", "--format", "json" }
t.is(r.status, 2, "ctx:usage_error: exit 2")
t.like(r.stderr, "refuse: %-%-a and %-%-b exclude each other", "ctx:usage_error: the runbook's message")
t.ok(r.verdict and r.verdict.calls == 0 and r.verdict.exit == 2, "ctx:usage_error: no primitive ran")
r = rb { "run", refuse, "--a" }
t.is(r.status, 0, "control: --a alone runs")

-- ---------------------------------------------------------------- a --service the inventory lacks
-- (remedies whose service comes from the command line cannot declare it in needs): lib/mailops'
-- need_service refuses it through ctx:usage_error, before anything runs
do
  local inv = inventory("svc", HOSTS .. MAIL)
  local rs = rb { "run", "relay-transport-set", "--service", "dell/nosuch", "--value", "lmtp:[127.0.0.20]:2525",
                  "-i", inv, "--format", "json" }
  t.is(rs.status, 2, "relay-transport-set --service HOST/SVC the inventory lacks: exit 2 (was 3 after starting)")
  t.like(rs.stderr, "service dell/nosuch is not in the inventory %(add hosts%.dell%.services%.nosuch%)", "... naming the key to add")
  t.ok(rs.verdict and rs.verdict.calls == 0, "... and no primitive ran")
  rs = rb { "run", "container-restart", "--service", "ec2/nosuch", "-i", inv }
  t.is(rs.status, 2, "container-restart --service the inventory lacks: exit 2")
end

-- ---------------------------------------------------------------- a PRIMS entry whose module is missing
do
  local context = require "runbook.context"
  context.PRIMS[#context.PRIMS + 1] = "nosuch_family"
  local ok, err = pcall(context.new, {})
  t.ok(not ok, "a PRIMS entry whose module is missing is an error at start (was skipped silently)")
  t.like(tostring(err), "runbook%.prim%.nosuch_family", "... naming the module")
  context.PRIMS[#context.PRIMS] = nil
end

exec.run({ "rm", "-rf", TMP })
t.done()
