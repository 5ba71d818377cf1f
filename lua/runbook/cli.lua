-- runbook.cli: the command line. engine.c calls main(argv) and exits with what it returns.
--
-- Exit codes: 0 ran and found nothing wrong; 1 ran and found a problem (or would fix one);
-- 2 usage, runbook or inventory error (nothing ran); 3 runtime failure (deadline, error).
-- Depends on: runbook.core, runbook.args, runbook.sandbox, runbook.context, runbook.trace,
-- runbook.report, runbook.inventory.
local core = require "runbook.core"

local M = {}
local EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3

local HELP = [[
runbook - run executable mail-investigation runbooks across your mail hosts

Usage:
  runbook run RUNBOOK [--ARG VALUE]... [options]   run a runbook (a dry run unless --apply)
  runbook list [--format json]                     runbooks on the search path, with their arguments
  runbook describe RUNBOOK                         a runbook's full declaration and help
  runbook check RUNBOOK...                         load, validate and lint runbooks; runs nothing
  runbook doc [METHOD]                             the runbook API: every ctx method, or one in full
  runbook lua FILE [ARG]...                        run a trusted Lua script with the engine's
                                                   modules (tests, experiments); not sandboxed
  runbook help | --help | --version

Options for run:
  -i, --inventory FILE   hosts, services, databases, endpoints (YAML). Default: $RUNBOOK_INVENTORY,
                         else /etc/runbook/inventory.yaml when it exists
      --apply            really make the changes a runbook proposes (asks on a terminal)
  -y, --yes              with --apply: do not ask (required when stdin is not a terminal)
      --format FMT       text (default) or json (JSON Lines, one event per line, schema 1)
      --trace            also show every command, SQL text, request and protocol transcript
      --deadline SECS    stop the whole run after SECS seconds (default: inventory, else 300;
                         at most 86400)
      --memory-limit SIZE  the most memory runbook code may hold, e.g. 256M, 2G (default:
                         inventory defaults.memory_limit, else 512M)
      --report FILE      write a Markdown report of the run (steps, findings, evidence, fix)
      --color WHEN       auto (default: only on a terminal, never with NO_COLOR), always, never

A runbook is named by path (./runbooks/undelivered.lua) or by name with or without .lua,
looked up in $RUNBOOK_PATH (colon-separated), ./runbooks, then the installed runbooks.
Its own arguments (--addr, --since, ...) are declared in the runbook: `runbook describe NAME`.

Examples:
  runbook list
  runbook run undelivered --addr info@example.jp --since 2h -i /etc/runbook/mail.yaml
  runbook run undelivered.lua --addr info@example.jp --format json | jq -c 'select(.event=="verdict")'
  runbook run relay-domain-add --domain example.jp            # shows exactly what it would change
  runbook run relay-domain-add --domain example.jp --apply    # asks, changes, verifies, journals
  runbook check runbooks/*.lua                                # after editing a runbook

Exit status:
  0  ran and found nothing wrong       2  usage, runbook or inventory error: nothing ran
  1  found a problem / would fix one   3  runtime failure (deadline exceeded, unhandled error)

Every change goes through one dry-run gate: without --apply a write only prints what it would
do (command, SQL or HTTP request, current and new value). With --apply each change is confirmed,
made, re-read and appended to the audit journal named in the inventory (audit.journal).
Secrets come from the environment, 0600 files or ssh-agent and are masked (***) in all output.
See runbook(1) and README.md for the inventory format and the JSON event schema.
]]

local function err(msg)
  io.stderr:write("runbook: ", msg, "\n")
end

local function usage(msg)
  err(msg)
  io.stderr:write("Try 'runbook --help'.\n")
  return EXIT_USAGE
end

-- ---------------------------------------------------------------- the runbook search path

local function exists(p)
  local st = require("runbook.exec").stat(p)
  return st ~= nil and st.type == "file"
end

function M.search_dirs()
  local dirs = {}
  local env = os.getenv("RUNBOOK_PATH")
  if env and env ~= "" then
    for d in env:gmatch("[^:]+") do dirs[#dirs + 1] = d end
  end
  dirs[#dirs + 1] = "./runbooks"
  dirs[#dirs + 1] = core.build().root .. "/runbooks"
  local seen, out = {}, {}
  for _, d in ipairs(dirs) do
    local real = core.realpath(d) or d
    if not seen[real] then seen[real] = true; out[#out + 1] = d end
  end
  return out
end

-- resolve(name) -> path | nil, message
function M.resolve(name)
  if name:find("/", 1, true) then
    if exists(name) then return name end
    return nil, ("runbook %s: no such file"):format(name)
  end
  if not name:match("^[%w_.-]+$") then return nil, ("bad runbook name %q"):format(name) end
  local file = name:match("%.lua$") and name or (name .. ".lua")
  for _, d in ipairs(M.search_dirs()) do
    if exists(d .. "/" .. file) then return d .. "/" .. file end
  end
  return nil, ("runbook %s not found in %s"):format(name, table.concat(M.search_dirs(), ":"))
end

local function list_files()
  local exec = require "runbook.exec"
  local seen, files = {}, {}
  for _, d in ipairs(M.search_dirs()) do
    local r = exec.run({ "find", d, "-maxdepth", "1", "-name", "*.lua", "-type", "f" }, { timeout = 5 })
    if r and r.status == 0 then
      local names = {}
      for p in r.stdout:gmatch("[^\n]+") do names[#names + 1] = p end
      table.sort(names)
      for _, p in ipairs(names) do
        local n = p:match("([^/]+)%.lua$")
        if not seen[n] then seen[n] = true; files[#files + 1] = p end
      end
    end
  end
  return files
end

-- ---------------------------------------------------------------- argument parsing

local ENGINE_VALUE = { inventory = true, format = true, deadline = true, report = true, color = true,
                       ["memory-limit"] = true }
local ENGINE_FLAG = { apply = true, yes = true, trace = true, help = true }
local SHORT = { ["-i"] = "inventory", ["-y"] = "yes", ["-h"] = "help" }

-- parse_run(argv, from) -> opts, given | nil, message
local function parse_run(argv, from, specs)
  local opts, given = {}, {}
  local booleans = {}
  for _, s in ipairs(specs or {}) do if s.type == "boolean" then booleans[s.name] = true end end
  local i = from
  while i <= #argv do
    local a = argv[i]
    local name, value
    if SHORT[a] then name = SHORT[a]
    elseif a:sub(1, 2) == "--" and #a > 2 then
      name, value = a:match("^%-%-([^=]+)=(.*)$")
      if not name then name = a:sub(3) end
    else
      return nil, ("unexpected argument %q (arguments are --NAME VALUE)"):format(a)
    end
    if not name:match("^[%w][%w_-]*$") then return nil, ("bad option %q"):format(a) end
    local target = (ENGINE_VALUE[name] or ENGINE_FLAG[name]) and opts or given
    if target[name] ~= nil then return nil, ("--%s given twice"):format(name) end
    if ENGINE_FLAG[name] or (booleans[name] and value == nil) then
      if value ~= nil and ENGINE_FLAG[name] then return nil, ("--%s takes no value"):format(name) end
      target[name] = value == nil and true or value
    else
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then return nil, ("--%s needs a value"):format(name) end
      end
      target[name] = value
    end
    i = i + 1
  end
  return opts, given
end

-- ---------------------------------------------------------------- commands

-- load_runbook(name [, budget]) -> rb | nil, message, why ("deadline"/"memory": the file's top
-- level hit a limit: a runtime failure, exit 3; otherwise a runbook error, exit 2)
local function load_runbook(name, budget)
  local path, e = M.resolve(name)
  if not path then return nil, e end
  return require("runbook.sandbox").load(path, budget)
end

M.MAX_DEADLINE = 86400                      -- a run longer than a day is a mistake, not a plan
M.DEFAULT_MEMORY = 512 * 1024 * 1024

-- deadline_value(v) -> seconds | nil: a positive, finite number of seconds, at most a day
local function deadline_value(v)
  v = tonumber(v)
  if not v or v ~= v or v <= 0 or v > M.MAX_DEADLINE then return nil end
  return v
end

-- parse_size("512M") -> bytes | nil (16M .. 1T; K, M, G, T suffixes are powers of 1024)
function M.parse_size(v)
  if type(v) ~= "string" then return nil end
  local n, unit = v:match("^%s*(%d+)%s*([KkMmGgTt]?)i?[Bb]?%s*$")
  if not n or #n > 12 then return nil end
  local b = tonumber(n) * 1024 ^ (({ [""] = 0, k = 1, m = 2, g = 3, t = 4 })[unit:lower()])
  if b < 16 * 1024 ^ 2 or b > 1024 ^ 4 then return nil end
  return math.tointeger(b)
end

local function arg_usage(s)
  local t = s.type == "choice" and table.concat(s.choices, "|") or s.type:upper()
  if s.type == "boolean" then return "--" .. s.name end
  return ("--%s %s"):format(s.name, t)
end

local function cmd_describe(argv)
  if not argv[2] or argv[3] then return usage("describe takes one runbook name") end
  local rb, e, why = load_runbook(argv[2])
  if not rb then err(e); return why and EXIT_RUNTIME or EXIT_USAGE end
  local out = io.stdout
  out:write(("%s (%s) - %s\n  file: %s\n  sha256: %s\n"):format(rb.name, rb.kind, rb.description, rb.path, rb.sha256))
  for _, kind in ipairs { "hosts", "services", "sql", "http" } do
    if #rb.needs[kind] > 0 then
      out:write(("  needs %s: %s\n"):format(kind, table.concat(rb.needs[kind], ", ")))
    end
  end
  out:write("\nArguments:\n")
  if #rb.args == 0 then out:write("  (none)\n") end
  for _, s in ipairs(rb.args) do
    out:write(("  %-28s %s%s%s\n"):format(arg_usage(s), s.help, s.required and " (required)" or "",
      s.default ~= nil and (" (default: " .. tostring(s.default) .. ")") or ""))
  end
  if rb.help then out:write("\n", (rb.help:gsub("^\n+", ""):gsub("\n*$", "\n"))) end
  if rb.examples then
    out:write("\nExamples:\n")
    for _, ex in ipairs(rb.examples) do out:write("  ", ex, "\n") end
  end
  return EXIT_OK
end

local function cmd_list(argv)
  local opts, _ = parse_run(argv, 2, {})
  if not opts then return usage(_) end
  local fmt = opts.format or "text"
  local json = require "runbook.json"
  local sandbox = require "runbook.sandbox"
  for _, p in ipairs(list_files()) do
    local rb, e = sandbox.load(p)
    if fmt == "json" then
      local rec = { name = p:match("([^/]+)%.lua$"), path = p }
      if rb then
        rec.description, rec.kind, rec.needs = rb.description, rb.kind, rb.needs
        rec.args = {}
        for _, s in ipairs(rb.args) do
          rec.args[#rec.args + 1] = { name = s.name, type = s.type, required = s.required or false,
                                      default = s.default, help = s.help, choices = s.choices }
        end
      else rec.error = e end
      io.stdout:write(json.encode(rec), "\n")
    else
      local name = p:match("([^/]+)%.lua$")
      if rb then
        local a = {}
        for _, s in ipairs(rb.args) do
          a[#a + 1] = s.required and arg_usage(s) or ("[" .. arg_usage(s) .. "]")
        end
        io.stdout:write(("%-22s %-9s %s\n"):format(name, rb.kind, rb.description))
        if #a > 0 then io.stdout:write(("%-32s %s\n"):format("", table.concat(a, " "))) end
      else
        io.stdout:write(("%-22s %-9s BROKEN: %s\n"):format(name, "?", e))
      end
    end
  end
  return EXIT_OK
end

-- check RUNBOOK...: load each (syntax, declaration, its top level under the strict
-- environment), then lint its source and its lib/ helpers (runbook.lint). One line per problem,
-- "file:line: message"; "ok   FILE (...)" for a clean one. Exit 0 clean, 1 when any problem,
-- 3 when a file's top level hit the load deadline or the memory limit.
local function cmd_check(argv)
  if not argv[2] then return usage("check takes one or more runbooks") end
  local status = EXIT_OK
  local linted = {}
  local lint = require "runbook.lint"
  local ctx_proxy = require("runbook.context").new {}:public()
  local function ctx_has(name) return ctx_proxy[name] ~= nil end
  for i = 2, #argv do
    local problems = 0
    local function problem(msg)
      io.stdout:write(msg, "\n")
      problems = problems + 1
    end
    local rb, e, why = load_runbook(argv[i])
    if not rb then
      problem(e)
      if why then status = EXIT_RUNTIME end
    else
      local dir = rb.path:match("^(.*)/[^/]*$") or "."
      local sandbox = require "runbook.sandbox"
      local globals = {}
      for k in next, sandbox.env(dir) do globals[k] = true end
      local causes, cerr, cfrom = sandbox.cause_codes(dir)
      if not causes then problem(cerr) end
      -- the file and every lib/ helper it requires (and they require), each linted once
      local files, queued, n = { { path = rb.path, text = rb.text } }, {}, 1
      while n <= #files do
        local f = files[n]
        local found = {}
        for _, r in ipairs(lint.requires(f.text)) do
          local why, kind = sandbox.module_problem(r.name, dir)
          if kind then found[#found + 1] = { line = r.line, message = why } end
          local rel = r.name:match("^lib%.([%w_]+)$")
          local p = rel and (dir .. "/lib/" .. rel .. ".lua")
          if p and not kind and not queued[p] then
            queued[p] = true
            local text = require("runbook.exec").readfile(p, 4 * 1024 * 1024)
            if text then files[#files + 1] = { path = p, text = text } end
          end
        end
        local key = core.realpath(f.path) or f.path
        if not linted[key] then
          linted[key] = true
          for _, p in ipairs(lint.file(f.path, f.text, { globals = globals, ctx_has = ctx_has,
                                                         causes = causes, causes_from = cfrom })) do
            found[#found + 1] = p
          end
          table.sort(found, function(x, y) return x.line < y.line or (x.line == y.line and x.message < y.message) end)
          for _, p in ipairs(found) do problem(("%s:%d: %s"):format(f.path, p.line, p.message)) end
        end
        n = n + 1
      end
      if problems == 0 then
        io.stdout:write(("ok   %s (%s, %d argument(s))\n"):format(rb.path, rb.kind, #rb.args))
      end
    end
    if problems > 0 and status == EXIT_OK then status = EXIT_PROBLEM end
  end
  return status
end

local function cmd_lua(argv)
  local file = argv[2]
  if not file then return usage("usage: runbook lua FILE [ARG...]") end
  local a = { [0] = file }
  for i = 3, #argv do a[#a + 1] = argv[i] end
  _G.arg = a
  local chunk, e = loadfile(file, "t")
  if not chunk then err(e); return EXIT_USAGE end
  local ok, e2 = xpcall(chunk, debug.traceback, table.unpack(a))
  if not ok then err(tostring(e2)); return EXIT_RUNTIME end
  return EXIT_OK
end

local function default_inventory()
  local env = os.getenv("RUNBOOK_INVENTORY")
  if env and env ~= "" then return env end
  if exists("/etc/runbook/inventory.yaml") then return "/etc/runbook/inventory.yaml" end
  return nil
end

-- prescan(argv, from) -> the engine options a run needs before its runbook file is loaded (the
-- load's deadline and memory, the format of the verdict when loading fails). parse_run, which
-- needs the runbook's declaration, has the last word.
local function prescan(argv, from)
  local o, i = {}, from
  local early = { format = true, deadline = true, ["memory-limit"] = true }
  while i <= #argv do
    local name, value = argv[i]:match("^%-%-([%w-]+)=(.*)$")
    if not name then
      name = argv[i]:match("^%-%-([%w-]+)$")
      if early[name] then value = argv[i + 1]; i = i + 1 end
    end
    if early[name] and o[name] == nil then o[name] = value end
    i = i + 1
  end
  return o
end

-- sinks_for(fmt, color_opt, verbose) -> sinks, collector, events
local function sinks_for(fmt, color_opt, verbose)
  local trace = require "runbook.trace"
  local tty = core.isatty(1)
  local sinks = {}
  if fmt == "json" then
    sinks[#sinks + 1] = trace.json { out = io.stdout }
  else
    local color = color_opt == "always" or (color_opt == "auto" and tty and not os.getenv("NO_COLOR"))
    sinks[#sinks + 1] = trace.text { out = io.stdout, color = color, tty = tty, verbose = verbose }
  end
  local collect, events = trace.collector()
  return sinks, collect, events, tty
end

-- A runbook file whose top level hit the load deadline or the memory limit: a runtime failure
-- (exit 3) that still ends, like every run, in a verdict event.
local function load_failed(name, msg, pre)
  local sinks = sinks_for(pre.format == "json" and "json" or "text", "never", false)
  local ctx = require("runbook.context").new { sinks = sinks, runbook = { name = name } }
  ctx:emit { event = "verdict", status = "error", declared = false, exit = EXIT_RUNTIME,
             ms = ctx:elapsed() * 1000, calls = 0, findings = 0, would = 0, applied = 0, error = msg }
  return EXIT_RUNTIME
end

local function cmd_run(argv)
  local name = argv[2]
  if not name or name:sub(1, 1) == "-" then
    if name == "--help" or name == "-h" then io.stdout:write(HELP); return EXIT_OK end
    return usage("run needs a runbook name: runbook run RUNBOOK [--ARG VALUE]...")
  end
  -- Runbook code runs from here on: its top level under the load deadline (the --deadline
  -- when shorter) and the memory limit (the --memory-limit when given).
  local pre = prescan(argv, 3)
  local early_mem = M.parse_size(pre["memory-limit"])
  if early_mem then core.set_memory_limit(early_mem) end
  local rb, e, why = load_runbook(name, deadline_value(pre.deadline))
  if not rb then
    if why then return load_failed(name, e, pre) end
    err(e); return EXIT_USAGE
  end
  local opts, given = parse_run(argv, 3, rb.args)
  if not opts then return usage(given) end
  if opts.help then return cmd_describe { "describe", name } end
  local fmt = opts.format or "text"
  if fmt ~= "text" and fmt ~= "json" then return usage("--format must be text or json") end
  local color_opt = opts.color or "auto"
  if color_opt ~= "auto" and color_opt ~= "always" and color_opt ~= "never" then
    return usage("--color must be auto, always or never")
  end
  if opts.yes and not opts.apply then return usage("--yes only makes sense with --apply") end
  if opts.apply and not opts.yes and not core.isatty(0) then
    return usage("refusing --apply without --yes: stdin is not a terminal to confirm on")
  end
  local deadline, memory
  if opts.deadline then
    deadline = deadline_value(opts.deadline)
    if not deadline then
      return usage(("--deadline takes a positive number of seconds, at most %d"):format(M.MAX_DEADLINE))
    end
  end
  if opts["memory-limit"] then
    memory = M.parse_size(opts["memory-limit"])
    if not memory then return usage("--memory-limit takes a size from 16M to 1T, like 512M or 2G") end
  end
  local values, verr = require("runbook.args").bind(rb.args, given)
  if not values then return usage(verr) end

  local invpath = opts.inventory or default_inventory()
  local inventory = require "runbook.inventory"
  local inv
  if invpath then
    local ierr
    inv, ierr = inventory.load(invpath)
    if not inv then err(ierr); return EXIT_USAGE end
  else
    inv = inventory.empty()
  end
  -- What the runbook declares it needs (hosts, services, databases, HTTP endpoints: inventory
  -- names, or roles the inventory's mail.* keys resolve) must be in the inventory: one line per
  -- missing thing, naming the key to add, and nothing runs.
  local missing = inventory.missing(inv, rb.needs)
  if #missing > 0 then
    for _, m in ipairs(missing) do
      err(("runbook %s needs %s (inventory %s)"):format(rb.name, m,
        invpath or "none: --inventory FILE"))
    end
    return EXIT_USAGE
  end
  -- A service argument (HOST/SERVICE) must name a service of the inventory.
  for _, s in ipairs(rb.args) do
    local v = values[s.name]
    if s.type == "service" and v ~= nil then
      local h, svc = v:match("^(.-)/(.*)$")
      local host = inv.hosts[h]
      if not (host and host.services and host.services[svc]) then
        return usage(("--%s %s: %s"):format(s.name, v, host
          and ("host %s has no service %s in the inventory (hosts.%s.services)"):format(h, svc, h)
          or ("no host %s in the inventory%s"):format(h, invpath and (" " .. invpath) or " (none given: --inventory FILE)")))
      end
    end
  end
  if opts.apply and not (inv.audit and inv.audit.journal) then
    err("--apply needs an audit journal: set audit.journal in the inventory")
    return EXIT_USAGE
  end
  if not deadline then
    deadline = inv.defaults.deadline or 300
    if not deadline_value(deadline) then
      err(("%s: defaults.deadline: at most %d seconds (a day)"):format(invpath or "inventory", M.MAX_DEADLINE))
      return EXIT_USAGE
    end
  end
  if not memory and inv.defaults.memory_limit ~= nil then
    memory = M.parse_size(inv.defaults.memory_limit)
    if not memory then
      err(("%s: defaults.memory_limit: expected a size from 16M to 1T, like 512M or 2G"):format(invpath or "inventory"))
      return EXIT_USAGE
    end
  end
  if opts.report then
    local f, ferr = io.open(opts.report, "a")
    if not f then err("--report: " .. tostring(ferr)); return EXIT_USAGE end
    f:close()
  end

  -- Everything is valid: run.
  memory = memory or M.DEFAULT_MEMORY
  core.set_memory_limit(memory)
  local sinks, collect, events, tty = sinks_for(fmt, color_opt, opts.trace)
  if opts.report then sinks[#sinks + 1] = collect end

  local arg_list = {}
  for _, s in ipairs(rb.args) do
    if given[s.name] ~= nil then
      local v = given[s.name]
      arg_list[#arg_list + 1] = v == true and ("--" .. s.name)
        or ("--%s %s"):format(s.name, require("runbook.context").shell_word(v))
    end
  end
  local context = require "runbook.context"
  local ctx = context.new {
    inventory = inv, apply = opts.apply, yes = opts.yes, trace = opts.trace, sinks = sinks,
    live = fmt == "text" and tty,
    runbook = { name = rb.name, sha256 = rb.sha256 }, args = values,
  }
  for _, s in ipairs(rb.args) do
    if s.secret and type(values[s.name]) == "string" then ctx:secret(values[s.name]) end
  end
  ctx:emit { event = "run.start", runbook = rb.name, path = rb.path, sha256 = rb.sha256,
             args = values, arg_list = arg_list, apply = ctx.apply, inventory = inv.path,
             deadline = deadline, version = core.build().version }
  local proxy = ctx:public()
  -- The runbook runs under the deadline; pcall_deadline restores "no deadline" with no Lua
  -- code in between, and everything the engine keeps from the run is already plain data
  -- (context.lua copies findings and the verdict when the runbook states them).
  local ok, rerr, why = core.pcall_deadline(deadline, function(x)
    if context.usage_error_of(x) then return x end
    return debug.traceback(tostring(x), 2)
  end, rb.run, proxy)

  local code
  -- what run returns is not an error (remedies return their outcome: "fixed", "dryrun", ...)
  if ok then rerr = nil end
  if not ok then
    code = EXIT_RUNTIME
    local umsg, ucalls = context.usage_error_of(rerr)
    if why == "deadline" then
      rerr = ("deadline of %gs exceeded"):format(deadline)
    elseif why == "memory" then
      rerr = ("memory limit of %d MiB exceeded"):format(memory // (1024 * 1024))
    elseif umsg and ucalls == 0 and ctx.counters.calls == 0 then
      code, rerr = EXIT_USAGE, umsg
      err(("%s: %s"):format(rb.name, ctx:mask(umsg)))
      io.stderr:write(("Try 'runbook describe %s'.\n"):format(rb.name))
    elseif umsg then
      rerr = ("usage error after %d primitive call(s): %s"):format(ctx.counters.calls, umsg)
    else
      rerr = tostring(rerr)
      if rerr:find("deadline exceeded", 1, true) then rerr = ("deadline of %gs exceeded"):format(deadline) end
    end
  end
  -- What follows is engine code only; a generous deadline still bounds it.
  local fok, ferr = core.pcall_deadline(60, debug.traceback, function()
    if not code then
      if ctx.verdict_event and ctx.verdict_event.status == "healthy" and (ctx.step_errors or 0) > 0 then
        -- a step that failed with an error is a check that could not run: never healthy
        code = EXIT_RUNTIME
        rerr = ("healthy verdict refused: %d step(s) failed with an error"):format(ctx.step_errors)
      elseif ctx.verdict_event then
        code = ctx.verdict_event.status == "healthy" and EXIT_OK or EXIT_PROBLEM
      elseif (ctx.step_errors or 0) > 0 then
        code = EXIT_RUNTIME
        rerr = ("%d step(s) failed with an error"):format(ctx.step_errors)
      else
        code = EXIT_OK
        for _, f in ipairs(ctx.all_findings) do if f.severity == "fail" then code = EXIT_PROBLEM end end
      end
      if ctx.counters.would > 0 and code == EXIT_OK then code = EXIT_PROBLEM end
    end
    -- The last event is always the verdict: the runbook's own, or one the engine states.
    local v = ctx.verdict_event or { event = "verdict", declared = false,
      status = code == EXIT_OK and "healthy" or code == EXIT_PROBLEM and "problem" or "error" }
    if code == EXIT_RUNTIME or code == EXIT_USAGE then v.status = "error" end
    v.declared = ctx.verdict_event ~= nil
    v.exit, v.ms, v.calls = code, ctx:elapsed() * 1000, ctx.counters.calls
    v.findings, v.would, v.applied = #ctx.all_findings, ctx.counters.would, ctx.counters.applied
    v.error = rerr and (opts.trace and rerr or rerr:match("^[^\n]*")) or nil
    ctx:emit(v)
    ctx:close()
    if opts.report then
      local md = require("runbook.report").markdown(events)
      local okw, werr = require("runbook.exec").writefile(opts.report, ctx:mask(md), tonumber("600", 8))
      if not okw then err("--report: " .. tostring(werr)) end
    end
  end)
  if not fok then
    err("internal error after the run: " .. tostring(ferr))
    return EXIT_RUNTIME
  end
  return code
end

function M.main(argv)
  -- Runbooks must not reach the real string table through a string's metatable.
  local smt = getmetatable("")
  smt.__metatable = false
  string.dump = nil

  local cmd = argv[1]
  -- Runbook code (run, list, describe, check) runs under a memory limit; `lua` runs trusted
  -- scripts (tests, benchmarks) without one.
  if cmd ~= "lua" then core.set_memory_limit(M.DEFAULT_MEMORY) end
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(HELP)
    return cmd == nil and EXIT_USAGE or EXIT_OK
  end
  if cmd == "--version" or cmd == "version" then
    io.stdout:write("runbook ", core.build().version, " (", _VERSION, ")\n")
    return EXIT_OK
  end
  local ok, res = xpcall(function()
    if cmd == "run" then return cmd_run(argv)
    elseif cmd == "list" then return cmd_list(argv)
    elseif cmd == "describe" then return cmd_describe(argv)
    elseif cmd == "check" then return cmd_check(argv)
    elseif cmd == "lua" then return cmd_lua(argv)
    elseif cmd == "doc" then return require("runbook.doc").main(argv)
    end
    return usage(("unknown command %q"):format(cmd))
  end, debug.traceback)
  if not ok then
    err("internal error: " .. tostring(res))
    return EXIT_RUNTIME
  end
  return res
end

return M
