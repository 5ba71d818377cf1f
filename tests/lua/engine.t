-- engine.t: the command line, argument validation, sandbox, dry-run gate, apply + audit,
-- JSON events, secret masking, report and exit codes, all through the real binary.
local t = require "tap"
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"

local RB = os.getenv("RUNBOOK")
local ROOT = os.getenv("RUNBOOK_ROOT")
local FIX = ROOT .. "/tests/fixtures"
local TMP = "/tmp/runbook-engine-test-" .. core.getpid()
exec.run({ "mkdir", "-p", TMP })

local rb = require("rbrun").runner { timeout = 20,
  env = { RUNBOOK_PATH = FIX .. "/runbooks", NO_COLOR = "1", RUNBOOK_INVENTORY = "" } }

local function exists(p) return exec.stat(p) ~= nil end

-- ---------------------------------------------------------------- help, version, usage
local r = rb { "--help" }
t.is(r.status, 0, "--help exits 0")
t.like(r.stdout, "Examples:", "--help teaches with examples")
t.like(r.stdout, "Exit status:", "--help documents exit codes")
r = rb {}
t.is(r.status, 2, "no command is a usage error")
r = rb { "--version" }
t.like(r.stdout, "^runbook %d+%.%d+%.%d+", "--version")
r = rb { "frobnicate" }
t.is(r.status, 2, "unknown command: exit 2")
t.like(r.stderr, "unknown command", "unknown command: message")

-- ---------------------------------------------------------------- list, describe, check
r = rb { "list" }
t.is(r.status, 0, "list exits 0")
t.like(r.stdout, "addr%s+diagnosis%s+fixture: typed arguments", "list shows name, kind, description")
t.like(r.stdout, "%-%-addr EMAIL", "list shows arguments")
t.like(r.stdout, "syntax%s+%?%s+BROKEN", "list marks a broken runbook without failing")
r = rb { "list", "--format", "json" }
local found
for l in r.stdout:gmatch("[^\n]+") do
  local rec = json.decode(l)
  if rec and rec.name == "addr" then found = rec end
end
t.ok(found and found.args and #found.args == 6, "list --format json: one object per runbook with args")
r = rb { "describe", "addr" }
t.like(r.stdout, "%-%-mode fast|full", "describe shows a choice")
t.like(r.stdout, "default: fast", "describe shows defaults")
r = rb { "check", "addr", FIX .. "/runbooks/problem.lua" }
t.is(r.status, 0, "check of good runbooks exits 0")
r = rb { "check", "syntax" }
t.is(r.status, 1, "check: a syntax error is a problem (exit 1)")
t.like(r.stdout, "syntax%.lua:3:", "check: syntax error names file:line")
r = rb { "check", "nodesc" }
t.is(r.status, 1, "check: a declaration error is a problem (exit 1)")
t.like(r.stdout, "description", "check: names the missing key")
r = rb { "check", "badarg" }
t.like(r.stdout, "clashes with an engine option", "check: argument clashing with an engine option")
r = rb { "run", "syntax" }
t.is(r.status, 2, "run of a broken runbook exits 2")
r = rb { "run", "no-such-runbook" }
t.is(r.status, 2, "unknown runbook exits 2")
t.like(r.stderr, "not found in", "unknown runbook: says where it looked")

-- ---------------------------------------------------------------- argument validation
r = rb { "run", "addr", "--addr", "info@Example.TEST", "--count", "3", "--probe", "--domain", "Shop.Test." }
t.is(r.status, 0, "valid arguments run, healthy verdict exits 0")
t.like(r.stdout, "addr=info@example%.test since=3600 count=3 probe=true mode=fast domain=shop%.test",
  "values are typed and normalised (domain lower-cased, duration in seconds)")
local bad = {
  { { "run", "addr" }, "missing required argument %-%-addr" },
  { { "run", "addr", "--addr", "" }, "empty value" },
  { { "run", "addr", "--addr", "a@b; touch " .. TMP .. "/pwned" }, "not a mail address" },
  { { "run", "addr", "--addr", "a$(touch " .. TMP .. "/pwned)@example.test" }, "not a mail address" },
  { { "run", "addr", "--addr", "x'@example.test" }, "not a mail address" },
  { { "run", "addr", "--addr", "info@example.test\ntouch " .. TMP .. "/pwned" }, "control characters" },
  { { "run", "addr", "--addr", ("a"):rep(30 * 1024) .. "@example.test" }, "at most 1024" },
  { { "run", "addr", "--addr", "info@example.test", "--colour", "x" }, "unknown argument %-%-colour" },
  { { "run", "addr", "--addr", "info@example.test", "--count", "11" }, "at most 10" },
  { { "run", "addr", "--addr", "info@example.test", "--count", "2x" }, "not an integer" },
  { { "run", "addr", "--addr", "info@example.test", "--since", "soon" }, "not a duration" },
  { { "run", "addr", "--addr", "info@example.test", "--mode", "slow" }, "not one of: fast, full" },
  { { "run", "addr", "--addr", "info@example.test", "--domain", "-bad-.test" }, "not a domain" },
  { { "run", "addr", "--addr", "info@example.test", "--addr", "x@example.test" }, "given twice" },
  { { "run", "addr", "--addr", "info@example.test", "--format", "xml" }, "text or json" },
  { { "run", "addr", "--addr", "info@example.test", "--yes" }, "only makes sense with %-%-apply" },
  { { "run", "addr", "--addr", "info@example.test", "stray" }, "unexpected argument" },
  { { "run", "addr", "--addr", "info@example.test", "--deadline", "-1" }, "positive number" },
}
for _, case in ipairs(bad) do
  r = rb(case[1])
  local label = table.concat(case[1], " "):sub(1, 60):gsub("\n", "\\n")
  t.is(r.status, 2, "usage error exit 2: " .. label)
  t.like(r.stderr, case[2], "clear message: " .. case[2])
  t.unlike(r.stdout, "▶", "nothing ran: " .. label)
end
t.ok(not exists(TMP .. "/pwned"), "no hostile argument was executed")

-- ---------------------------------------------------------------- exit codes, errors, deadline
r = rb { "run", "problem" }
t.is(r.status, 1, "a problem verdict exits 1")
t.like(r.stdout, "VERDICT: PROBLEM  hop: dell%.db  cause: user_missing", "verdict line")
t.like(r.stdout, "fix %(dry run first%): runbook run user%-create %-%-addr info@example%.test", "fix command line")
t.like(r.stdout, "evidence: dell 2026%-01%-01T00:00:00Z sql: 0 rows", "evidence with host, time, source")
r = rb { "run", "crash" }
t.is(r.status, 3, "a step that raises: exit 3")
t.like(r.stdout, "ERROR boom", "the failed step is marked")
t.like(r.stdout, "later steps still run", "errors are contained per step")
local t0 = core.now()
r = rb({ "run", "loop", "--deadline", "1" }, { timeout = 15 })
local took = core.now() - t0
t.is(r.status, 3, "deadline: exit 3")
t.like(r.stdout, "deadline of 1s exceeded", "deadline: says so")
t.ok(took < 6, ("deadline stops even a pcall-wrapped endless loop (%.1fs)"):format(took))

-- ---------------------------------------------------------------- inventory errors
local function inv_case(file, pattern, label)
  r = rb { "run", "addr", "--addr", "info@example.test", "--inventory", file }
  t.is(r.status, 2, "inventory error exit 2: " .. label)
  t.like(r.stderr, pattern, "inventory error names the place: " .. label)
end
inv_case(TMP .. "/missing.yaml", "missing%.yaml: No such file", "missing file")
inv_case(FIX .. "/inventory/broken.yaml", "broken%.yaml:%d+:%d+", "broken YAML")
inv_case(FIX .. "/inventory/unknown-key.yaml", "unknown%-key%.yaml:4:%d+: hosts%.dell%.colour: unknown key", "unknown key")
inv_case(FIX .. "/inventory/inline-password.yaml", "inline%-password%.yaml:6:%d+: databases%.mail%.password: inline secrets are refused", "inline password")
inv_case(FIX .. "/inventory/bad-port.yaml", "bad%-port%.yaml:5:%d+: hosts%.ec2%.port", "port out of range")
local pwfile = TMP .. "/db.pass"
exec.writefile(pwfile, "s3cret-pw\n", tonumber("644", 8))
exec.writefile(TMP .. "/readable.yaml", ("databases:\n  mail:\n    host: 127.0.0.1\n    user: u\n    database: d\n    password_file: %s\n"):format(pwfile), tonumber("644", 8))
inv_case(TMP .. "/readable.yaml", "readable%.yaml:6:%d+: databases%.mail%.password_file: .* readable by group or others", "world-readable password file")
t.unlike(r.all, "s3cret", "the password file's content is never shown")

-- ---------------------------------------------------------------- dry run, apply, audit
local audit = TMP .. "/audit.jsonl"
local inv = TMP .. "/inv.yaml"
local src = assert(exec.readfile(FIX .. "/inventory/good.yaml"))
exec.writefile(inv, (src:gsub("AUDIT", audit)), tonumber("600", 8))
local target = TMP .. "/banner.txt"
r = rb { "run", "examples/banner.lua", "--path", target, "--text", "maintenance at 22:00", "-i", inv }
t.is(r.status, 1, "dry run of a needed fix exits 1")
t.like(r.stdout, "WOULD file%.write on local: " .. target:gsub("%p", "%%%0"), "would-record names op, host, target")
t.like(r.stdout, "%+ maintenance at 22:00", "would-record shows the diff")
t.ok(not exists(target), "dry run: the file was not created")
t.ok(not exists(audit), "dry run: nothing journalled")
r = rb { "run", "examples/banner.lua", "--path", target, "--text", "maintenance at 22:00", "-i", inv, "--apply" }
t.is(r.status, 2, "--apply without --yes and no terminal: refused, exit 2")
t.like(r.stderr, "refusing %-%-apply without %-%-yes", "refusal says why")
t.ok(not exists(target), "refused apply changed nothing")
r = rb { "run", "examples/banner.lua", "--path", target, "--text", "maintenance at 22:00", "--apply", "--yes" }
t.is(r.status, 2, "--apply with no audit journal in the inventory: refused")
t.ok(not exists(target), "refused apply (no journal) changed nothing")
r = rb { "run", "examples/banner.lua", "--path", target, "--text", "maintenance at 22:00", "-i", inv, "--apply", "--yes" }
t.is(r.status, 0, "apply of the fix exits 0")
t.like(r.stdout, "APPLIED%(ok%) file%.write", "apply is traced")
t.is(exec.readfile(target), "maintenance at 22:00\n", "apply wrote the file")
local lines = {}
for l in (exec.readfile(audit) or ""):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(l) end
t.is(#lines, 2, "two audit lines per write: the intent, then the outcome")
t.is(lines[1] and lines[1].phase, "intent", "audit: the first line is the intent, written before the change")
t.is(lines[1] and lines[1].outcome, "intent", "audit: the intent line records no outcome yet")
t.is(lines[1] and lines[1].change, lines[2] and lines[2].change, "audit: intent and outcome carry the same change number")
local a = lines[2] or {}
t.is(a.phase, "outcome", "audit: the second line is the outcome")
t.is(a.op, "file.write", "audit: op")
t.is(a.outcome, "ok", "audit: outcome")
t.is(a.before, "(no file)", "audit: before")
t.is(a.after, "maintenance at 22:00\n", "audit: after (re-read)")
t.is(a.runbook, "banner", "audit: runbook name")
t.like(a.runbook_sha256 or "", "^%x+$", "audit: runbook sha256")
t.ok(a.operator and a.time and a.host, "audit: operator, time, host")
t.is(exec.stat(audit).perms, "0600", "audit journal is 0600")
r = rb { "run", "examples/banner.lua", "--path", target, "--text", "maintenance at 22:00", "-i", inv, "--apply", "--yes" }
t.is(r.status, 0, "idempotent: nothing to do is a clean exit")
t.like(r.stdout, "VERDICT: HEALTHY", "idempotent run says healthy")

-- ---------------------------------------------------------------- nothing may hang: the prompt
-- on a real terminal (script(1) gives it a pty) with nobody answering returns "timeout"
do
  local f = TMP .. "/prompt.lua"
  exec.writefile(f, [[
local core = require "runbook.core"
local t0 = core.now()
local v, msg, code = core.prompt("Apply this change? [y/N] ", true, 1)
io.stdout:write(("answer=%s code=%s took=%.1f\n"):format(tostring(v), tostring(code), core.now() - t0))
]], tonumber("644", 8))
  local pr = exec.run({ "sh", "-c", '(sleep 6) | script -qec "$0 lua $1" /dev/null', RB, f }, { timeout = 15 })
  local out = pr and pr.stdout or ""
  t.like(out, "answer=nil code=timeout", "a prompt nobody answers times out instead of hanging")
  local took = tonumber(out:match("took=([%d.]+)"))
  t.ok(took and took >= 0.9 and took < 3, "the prompt waited its timeout (" .. tostring(took) .. "s)")
end

-- ---------------------------------------------------------------- host roles
r = rb { "run", "roles", "-i", inv }
t.is(r.status, 2, "a runbook needing @mx with no mail.mx_host: exit 2")
t.like(r.stderr, "needs the MX host %(mail%.mx_host is not set%): set mail%.mx_host", "the missing role is named, with the key to set")
exec.writefile(TMP .. "/roles.yaml", (src:gsub("AUDIT", audit)) .. "mail: { mx_host: local }\n", tonumber("600", 8))
r = rb { "run", "roles", "-i", TMP .. "/roles.yaml" }
t.is(r.status, 0, "the role resolves through mail.mx_host")

-- ---------------------------------------------------------------- sandbox and gate
local forbidden = TMP .. "/escaped"
r = rb { "run", "escape", "--path", forbidden }
t.is(r.status, 1, "escape fixture ran (its write was a dry run: exit 1)")
t.unlike(r.stdout, "%[escaped%]", "no sandbox escape worked: " .. (r.stdout:match("FAIL %[escaped%][^\n]*") or "none"))
t.ok(not exists(forbidden), "no runbook code reached a write around the gate")
for _, name in ipairs { "io", "os_execute", "require_exec", "debug", "bytecode", "string_mt", "set_apply", "rawset_ctx", "internal" } do
  t.like(r.stdout, "blocked " .. name, "blocked: " .. name)
end

-- ---------------------------------------------------------------- JSON events
r = rb { "run", "problem", "--format", "json" }
local events, all_ok = {}, true
for l in r.stdout:gmatch("[^\n]+") do
  local ev = json.decode(l)
  if not ev then all_ok = false else events[#events + 1] = ev end
end
t.ok(all_ok and #events >= 5, "--format json: every line is a JSON object")
local schema_ok = true
for _, ev in ipairs(events) do
  if ev.schema ~= 1 or type(ev.event) ~= "string" or type(ev.t) ~= "number" or type(ev.time) ~= "string" or type(ev.run) ~= "string" then
    schema_ok = false
  end
end
t.ok(schema_ok, "every event carries schema, event, t, time, run")
t.is(events[1] and events[1].event, "run.start", "first event is run.start")
local last = events[#events] or {}
t.is(last.event, "verdict", "last event is the verdict")
t.is(last.status, "problem", "verdict.status")
t.is(last.hop, "dell.db", "verdict.hop")
t.is(last.cause, "user_missing", "verdict.cause")
t.like(last.fix or "", "^runbook run user%-create", "verdict.fix")
t.is(last.exit, 1, "verdict.exit")
local kinds = {}
for _, ev in ipairs(events) do kinds[ev.event] = true end
t.ok(kinds["step.start"] and kinds["step.end"] and kinds.finding, "step and finding events present")

-- ---------------------------------------------------------------- secrets masked everywhere
local secret = "Sup3r-S3cret-Value"
local control = secret:reverse()      -- the fixture prints this form unmasked on purpose
-- Plain substring search: the secret is not a Lua pattern ("-" would be a quantifier there and
-- the check could never match). Each check has a control: the same search must find the
-- reversed secret the fixture prints, so a check that cannot fail would show up here.
local function contains(s, x) return type(s) == "string" and s:find(x, 1, true) ~= nil end
local report = TMP .. "/report.md"
for _, mode in ipairs { { "--format", "text" }, { "--format", "json" }, { "--trace" } } do
  r = rb { "run", "secret", "--password", secret, "--path", TMP .. "/s.txt", "-i", inv, "--report", report, mode[1], mode[2] }
  local m = table.concat(mode, " ")
  t.ok(contains(r.all, control), "control: the check finds an unmasked form in " .. m .. " output")
  t.ok(not contains(r.all, secret), "secret masked in " .. m .. " output")
  t.ok(contains(r.stdout, "***"), "mask marker shown in " .. m)
end
local md = exec.readfile(report) or ""
t.ok(contains(md, control), "control: the check finds an unmasked form in the report")
t.ok(not contains(md, secret), "secret masked in the report")
t.like(md, "## Verdict", "report has a verdict section")
t.like(md, "## Steps", "report has the steps")
t.like(md, "## Changes", "report lists the changes")
r = rb { "run", "secret", "--password", secret, "--path", TMP .. "/s.txt", "-i", inv, "--apply", "--yes" }
local journal = exec.readfile(audit) or ""
t.ok(contains(journal, control) and contains(exec.readfile(TMP .. "/s.txt") or "", secret),
  "control: the check finds an unmasked form in the journal (the file holds the secret)")
t.ok(not contains(journal, secret), "secret masked in the audit journal")

exec.run({ "rm", "-rf", TMP })
t.done()
