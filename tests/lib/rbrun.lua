-- rbrun.lua: run the project's binary from a test and read what it printed. One place for what
-- engine.t, deadline.t, sandbox.t, gate.t and secrets.t each did on their own.
--
--   local rb = require("rbrun").runner { env = {...}, timeout = 20 }
--   local r = rb({ "run", "x.lua", ... } [, { env=, timeout=, cwd=, stdin= }])
--   r.status (-1 when killed at the timeout), r.stdout, r.stderr, r.all (both), r.secs (wall),
--   r.events (decoded JSON lines), r.verdict (the last verdict event, if any)
--
-- A run that hangs is killed with its process group at the timeout and fails the checks that
-- follow instead of hanging the test file. Depends on: runbook.exec, runbook.json, runbook.core.
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"

local M = {}
M.RB = os.getenv("RUNBOOK")
M.ROOT = os.getenv("RUNBOOK_ROOT")

-- The hosts of an inventory of the lab's shape that needs nothing of the lab (local transport,
-- no key, socket or secret file): for checks that must end before anything runs.
M.LAB_SHAPE_HOSTS = [[
hosts:
  ec2:
    transport: local
    services:
      postfix: { container: mailserver-postfix, kind: postfix }
  dell:
    transport: local
    services:
      postfix: { compose: { project: mailserver, service: postfix }, kind: postfix }
      dovecot: { compose: { project: mailserver, service: dovecot }, kind: dovecot }
]]

-- runner(defaults) -> rb(args [, opts]); defaults and opts: env (the whole environment of the
-- run), timeout (s), cwd (default the repository root), stdin.
function M.runner(defaults)
  defaults = defaults or {}
  return function(args, opts)
    opts = opts or {}
    local argv = { M.RB }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local t0 = core.now()
    local r, msg = exec.run(argv, { timeout = opts.timeout or defaults.timeout or 30,
      cwd = opts.cwd or defaults.cwd or M.ROOT, stdin = opts.stdin,
      env = opts.env or defaults.env or { NO_COLOR = "1", RUNBOOK_INVENTORY = "" } })
    r = r or { status = -1, stdout = "", stderr = "killed at the timeout: " .. tostring(msg) }
    r.secs = core.now() - t0
    r.all = r.stdout .. r.stderr
    r.events = {}
    for l in r.stdout:gmatch("[^\n]+") do
      local ev = json.decode(l)
      if type(ev) == "table" then
        r.events[#r.events + 1] = ev
        if ev.event == "verdict" then r.verdict = ev end
      end
    end
    return r
  end
end

return M
