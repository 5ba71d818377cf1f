-- sandbox.t: what a runbook hands the engine cannot drive the terminal, outlive its deadline
-- or turn an argument error into a started run (issue 9; fixtures in tests/fixtures/security/,
-- banner_esc.txt copied from the security review's reproducer). Each check is named after the
-- defect it proves fixed and failed on the code before the fix.
local t = require "tap"
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"

local RB = os.getenv("RUNBOOK")
local ROOT = os.getenv("RUNBOOK_ROOT")
local SEC = ROOT .. "/tests/fixtures/security"
local TMP = "/tmp/runbook-sandbox-test-" .. core.getpid()
exec.run({ "mkdir", "-p", TMP })
local INV = TMP .. "/local.yaml"
exec.writefile(INV, "hosts:\n  local: { transport: local }\n")
-- an inventory of the lab's shape that needs nothing of the lab (no key, socket or secret file
-- is touched before an argument error): these checks must not depend on the lab being up
local LAB = TMP .. "/labshape.yaml"
exec.writefile(LAB, require("rbrun").LAB_SHAPE_HOSTS .. "mail: { mx_host: ec2, mailserver_host: dell }\n")

local rb = require("rbrun").runner { timeout = 30,
  env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = TMP .. "/none" } }

local function has_byte(s, pattern) return s:find(pattern) ~= nil end

-- ---------------------------------------------------------------- text output escapes data
exec.run({ "cp", SEC .. "/banner_esc.txt", TMP .. "/banner.txt" })
local r = rb { "run", "examples/banner.lua", "--path", TMP .. "/banner.txt", "--text", "hello", "-i", INV, "--color", "never" }
t.is(r.status, 1, "banner_esc: the dry run proposes the fix (exit 1)")
t.like(r.stdout, "PWNED%-TITLE", "banner_esc: the file's content is shown")
t.ok(not has_byte(r.stdout, "\27"), "banner_esc: no ESC from data reaches the terminal (OSC title, clear screen, colour)")
t.ok(not has_byte(r.stdout, "\7"), "banner_esc: no BEL")
t.ok(not has_byte(r.stdout, "\r"), "banner_esc: no CR (no overwriting the line)")
t.like(r.stdout, "old\\e%]0;PWNED%-TITLE\\a\\e%[2J\\e%[31mRED\\rOK", "banner_esc: shown as visible escapes")
r = rb { "run", "examples/banner.lua", "--path", TMP .. "/banner.txt", "--text", "hello", "-i", INV, "--format", "json" }
t.ok(not has_byte(r.stdout, "[\0-\9\11-\31]"), "banner_esc: JSON lines carry no raw control characters either")
do
  local report = TMP .. "/banner-report.md"
  r = rb { "run", "examples/banner.lua", "--path", TMP .. "/banner.txt", "--text", "hello", "-i", INV,
           "--report", report }
  local md = exec.readfile(report) or ""
  t.like(md, "PWNED%-TITLE", "banner_esc: the report shows the file's content (control)")
  t.ok(not has_byte(md, "[\0-\8\11-\31\127]"), "banner_esc: the Markdown report carries no raw control characters")
  t.like(md, "\\e%]0;PWNED", "banner_esc: the report shows them as visible escapes")
end

r = rb { "run", SEC .. "/sandbox_output_spoof.lua", "-i", INV, "--color", "never" }
t.is(r.status, 1, "spoof: the runbook's problem verdict (exit 1)")
t.ok(not has_byte(r.stdout, "[\0-\9\11-\31\127]"), "spoof: no control character but newline in the text output")
t.ok(not r.stdout:find("\194\155", 1, true), "spoof: no C1 control (U+009B CSI) either")
t.like(r.stdout, "\\u009b", "spoof: the C1 control is shown as \\u009b")
local verdict_lines = 0
for l in r.stdout:gmatch("[^\n]+") do if l:find("^VERDICT:") then verdict_lines = verdict_lines + 1 end end
t.is(verdict_lines, 1, "spoof: a newline in data cannot start a forged VERDICT line")
t.like(r.stdout, "\n +VERDICT: HEALTHY", "spoof: the data's second line is indented under its first")
t.like(r.stdout, "VERDICT: PROBLEM", "spoof: the real verdict is shown")
r = rb { "run", SEC .. "/sandbox_output_spoof.lua", "-i", INV, "--color", "always" }
local colours_only = r.stdout:gsub("\27%[[%d;]*m", "")
t.ok(not has_byte(colours_only, "\27"), "spoof with --color always: the only ESC are the engine's own colours")

-- ---------------------------------------------------------------- usage errors before the run
r = rb { "run", "queue-flush", "--service", "../x", "-i", LAB, "--format", "json" }
t.is(r.status, 2, "queue-flush --service ../x: a usage error (exit 2), not a failed run")
t.like(r.stderr, "not HOST/SERVICE", "queue-flush --service ../x: says what is expected")
t.is(#r.events, 0, "queue-flush --service ../x: nothing started (no event)")
r = rb { "run", "queue-flush", "--service", "ec2/nosuch", "-i", LAB, "--format", "json" }
t.is(r.status, 2, "queue-flush --service ec2/nosuch: exit 2")
t.like(r.stderr, "host ec2 has no service nosuch", "... names what is missing from the inventory")
t.is(#r.events, 0, "... before anything started")
r = rb { "run", "queue-flush", "--service", "nohost/postfix", "-i", LAB }
t.is(r.status, 2, "queue-flush --service nohost/postfix: exit 2")
for _, name in ipairs { "container-restart", "queue-report" } do
  r = rb { "run", name, "--service", "../x", "-i", LAB, "--format", "json" }
  t.is(r.status, 2, name .. " --service ../x: a usage error (exit 2)")
  t.is(#r.events, 0, name .. " --service ../x: nothing started (no event)")
  r = rb { "run", name, "--service", "ec2/nosuch", "-i", LAB, "--format", "json" }
  t.is(r.status, 2, name .. " --service ec2/nosuch: exit 2 before anything runs")
end
r = rb { "run", "queue-flush", "-i", INV, "--format", "json" }
t.is(r.status, 2, "queue-flush with no MX postfix in the inventory: ctx:usage_error, exit 2")
t.like(r.stderr, "not in the inventory", "... with a clear message on stderr")
t.ok(r.verdict and r.verdict.event == "verdict" and r.verdict.exit == 2 and r.verdict.calls == 0,
  "... the run's verdict event says exit 2 and that no primitive ran")

r = rb { "run", SEC .. "/sandbox_usage_error.lua", "--n", "11", "-i", INV, "--format", "json" }
t.is(r.status, 2, "ctx:usage_error before any primitive: exit 2")
t.like(r.stderr, "at most 10 %(the fixture's own rule%)", "ctx:usage_error: the runbook's message on stderr")
t.like(r.stderr, "runbook describe", "ctx:usage_error: points at describe")
t.ok(r.verdict and r.verdict.status == "error" and r.verdict.exit == 2, "ctx:usage_error: verdict event, status error, exit 2")
r = rb { "run", SEC .. "/sandbox_usage_error.lua", "--n", "7", "-i", INV, "--format", "json" }
t.is(r.status, 2, "ctx:usage_error inside a step is not contained by the step: exit 2")
local reached = false
for _, ev in ipairs(r.events) do if ev.event == "note" then reached = true end end
t.ok(not reached, "... and the run ends there")
r = rb { "run", SEC .. "/sandbox_usage_error.lua", "--n", "5", "-i", INV, "--format", "json" }
t.is(r.status, 3, "ctx:usage_error after a primitive ran: exit 3 (something ran)")
t.like(r.verdict and r.verdict.error or "", "usage error after 1 primitive call", "... and says so")
r = rb { "run", SEC .. "/sandbox_usage_error.lua", "--n", "3", "-i", INV }
t.is(r.status, 0, "control: valid arguments run (exit 0)")

-- ---------------------------------------------------------------- declarations are plain data
r = rb { "check", SEC .. "/sandbox_decl_metatable.lua" }
t.is(r.status, 1, "a declaration with a metatable is a problem for check (exit 1)")
t.like(r.stdout, "plain table", "... saying it must be a plain table")
r = rb { "check", SEC .. "/sandbox_args_metatable.lua" }
t.is(r.status, 1, "an argument spec with a metatable is a problem for check (exit 1)")
t.like(r.stdout, "plain table", "... saying so")
r = rb { "check", "examples/banner.lua", "runbooks/queue-flush.lua", "runbooks/undelivered.lua" }
t.is(r.status, 0, "control: plain declarations still check")

-- ---------------------------------------------------------------- strict environment, modules, keys
-- (issue 13: a misspelt global read as nil; the sandbox allowed a module that does not exist
-- and accepted a declaration key, `fixes`, that it then dropped)
local function runbook_file(name, body)
  local p = TMP .. "/" .. name .. ".lua"
  exec.writefile(p, body)
  return p
end
local misspelt = runbook_file("misspelt", [[
return { description = "reads a misspelt global in a step",
  run = function(ctx)
    ctx:step("read", function() local limit = 3; ctx:note("limit=" .. tostring(limt)) end)
  end }
]])
r = rb { "run", misspelt, "-i", INV, "--format", "json" }
local step_end
for _, ev in ipairs(r.events) do if ev.event == "step.end" then step_end = ev end end
t.is(step_end and step_end.status, "error", "strict: reading an undeclared global fails the step")
t.like(step_end and step_end.reason or "", "misspelt%.lua:3: undeclared global 'limt'", "strict: the error names the global and the line")
t.is(r.status, 3, "strict: the run ends as a runtime failure (exit 3), not healthy")
local declared = runbook_file("declared_healthy", [[
return { description = "declares healthy after a step failed on a misspelt global",
  run = function(ctx)
    ctx:step("read", function() local limit = 3; ctx:note("limit=" .. tostring(limt)) end)
    ctx:verdict { status = "healthy", message = "all fine" }
  end }
]])
r = rb { "run", declared, "-i", INV, "--format", "json" }
t.is(r.status, 3, "a healthy verdict after a step failed with an error is refused (exit 3)")
t.is(r.verdict and r.verdict.status, "error", "... the verdict event says error, not healthy")
t.like(r.verdict and r.verdict.error or "", "healthy verdict refused: 1 step%(s%) failed", "... and why")
local writes = runbook_file("writes", [[
counter = 0
return { description = "assigns a global at its top level", run = function(ctx) end }
]])
r = rb { "run", writes, "-i", INV, "--format", "json" }
t.is(r.status, 2, "strict: a top-level global assignment is a runbook error (exit 2)")
t.like(r.stderr, "writes%.lua:1: assignment to undeclared global 'counter'", "strict: names the global and the line")
t.is(#r.events, 0, "strict: nothing started")
local control = runbook_file("strict_control", [[
local n = tonumber("3")
return { description = "uses only locals and the sandbox's globals",
  run = function(ctx) ctx:verdict { status = "healthy", message = "n=" .. n .. " " .. type(string.format) } end }
]])
r = rb { "run", control, "-i", INV }
t.is(r.status, 0, "strict: control, a runbook using only what the sandbox has runs")
r = rb { "run", runbook_file("setmt", [[
return { description = "tries to lift the strict environment",
  run = function(ctx)
    local ok = pcall(setmetatable, _ENV, nil)
    ctx:verdict { status = ok and "problem" or "healthy", message = ok and "lifted" or "kept" }
  end }
]]), "-i", INV }
t.is(r.status, 0, "strict: a runbook cannot remove the environment's metatable")
-- a module that does not exist: refused at load, even when only run() requires it
exec.run({ "mkdir", "-p", TMP .. "/lib" })
exec.writefile(TMP .. "/lib/helper.lua", "return { n = 1 }\n")
local nolib = runbook_file("nolib", [[
return { description = "requires a helper that does not exist, inside run",
  run = function(ctx) local h = require "lib.nosuch"; ctx:note(h) end }
]])
r = rb { "run", nolib, "-i", INV, "--format", "json" }
t.is(r.status, 2, "missing module: a runbook error before anything runs (exit 2)")
t.like(r.stderr, "nolib%.lua:2: module 'lib%.nosuch' does not exist", "missing module: file, line and name")
t.is(#r.events, 0, "missing module: nothing started")
r = rb { "run", runbook_file("mailfacts", [[
return { description = "requires an engine library that was listed but never existed",
  run = function(ctx) require("runbook.mailfacts") end }
]]), "-i", INV }
t.is(r.status, 2, "runbook.mailfacts (allowed before, never existed): refused at load")
t.like(r.stderr, "module 'runbook%.mailfacts' does not exist", "... saying it does not exist")
r = rb { "run", runbook_file("haslib", [[
local h = require "lib.helper"
local maillog = require("runbook.maillog")
return { description = "requires what exists",
  run = function(ctx) ctx:verdict { status = "healthy", message = h.n .. type(maillog) } end }
]]), "-i", INV }
t.is(r.status, 0, "control: a helper in lib/ and runbook.maillog load")
r = rb { "run", runbook_file("fixes", [[
return { description = "declares a key the engine does not use",
  fixes = { "user_missing" },
  run = function(ctx) ctx:verdict { status = "healthy" } end }
]]), "-i", INV }
t.is(r.status, 2, "declaration key 'fixes' (accepted and dropped before): refused at run")
t.like(r.stderr, "fixes%.lua:2: unknown declaration key 'fixes'", "... naming the key and its line")

-- ---------------------------------------------------------------- healthy only when every check answered
for _, case in ipairs { { "unknown", 3 }, { "fail", 3 }, { "ok", 0 }, { "skipped", 0 } } do
  local r2 = rb { "run", "tests/fixtures/runbooks/healthy_unknown.lua", "--status", case[1], "-i", INV, "--format", "json" }
  t.is(r2.status, case[2], ("healthy verdict with a check %s: exit %d %s"):format(case[1], case[2], r2.status == case[2] and "" or r2.stderr))
  local last = r2.events[#r2.events] or {}
  t.is(last.event, "verdict", "healthy verdict with a check " .. case[1] .. ": ends with a verdict event")
  if case[2] == 0 then
    t.is(last.status, "healthy", "a healthy verdict whose checks all answered stands (control)")
    t.is(type(last.checks) == "table" and #last.checks or 0, 2, "the verdict event lists the checks")
  else
    t.isnt(last.status, "healthy", "the engine refuses healthy while a check is " .. case[1])
  end
end

exec.run({ "rm", "-rf", TMP })
t.done()
