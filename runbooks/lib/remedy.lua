-- runbooks/lib/remedy.lua: the one lifecycle of a remedy's change, shared by every remedy.
--
-- A remedy looks before it acts (its own "check" step, with reads only) and ends with "nothing
-- to do" when there is nothing (remedy.nothing_to_do). Otherwise it hands its change to
-- remedy.change, which runs the rest the same way for every remedy:
--   1. the write step: the finding that names the problem, the notes that show what changes
--      (`name: before -> after`), then the gated write. A dry run leaves a would-record; with
--      --apply the engine confirms and journals it (intent, change, outcome);
--   2. a dry run ends with a problem verdict "...; the dry run changed nothing" (exit 1); a
--      declined confirmation ends with "nothing changed" (lib.mailops written); a failed write
--      ends the step with its error (exit 3);
--   3. after an applied write, the verify step looks again: fixed (a healthy verdict with its
--      evidence) or NOT fixed (a fail finding and a problem verdict, cause not_fixed unless the
--      remedy names a more precise one).
-- Depends on: lib.mailops (written), the ctx passed in.
local ops = require "lib.mailops"

local M = {}

-- nothing_to_do(ctx, message [, evidence]) -> "nothing": the healthy verdict of a remedy that
-- found nothing to change (exit 0). The message says so ("...: nothing to do").
function M.nothing_to_do(ctx, message, evidence)
  ctx:verdict { status = "healthy", message = message, evidence = evidence }
  return "nothing"
end

local function notes(ctx, lines)
  if type(lines) == "string" then lines = { lines } end
  for _, l in ipairs(lines or {}) do ctx:note(l) end
end

-- change(ctx, c) -> "fixed" | "not_fixed" | "dryrun" | "declined" | nil (a step failed: it
-- shows why). c:
--   step, title      the write step's name and title
--   finding          the problem, a finding table (warn), or nil
--   change           the note(s) that show the change: a string or a list of strings
--   write            function() -> res, msg, code: one gated write, judged with c.what
--   what             what the write changes, for the dry-run note ("relay_domains of ec2/postfix")
--   writes           instead of write, for several writes: function(written) -> outcome, where
--                    written(res, msg, code, what) -> "applied" | "dryrun" | "declined" judges each
--   after_write      function(outcome), optional: runs after the write step whatever its outcome
--   dry              the dry run's verdict: { message =, cause =, status = "problem", evidence = };
--                    "; the dry run changed nothing" is appended to the message
--   verify_step, verify_title   the verify step's name (default "verify") and title
--   verify           function() -> r, run after an applied write inside the verify step:
--                    { fixed = true, message =, evidence = }, or { fixed = false, message = the
--                    verdict's, why = the finding's (default: message), cause = "not_fixed",
--                    status = "problem", hop =, finding = false when the remedy stated it }
function M.change(ctx, c)
  local outcome = ctx:step(c.step, function()
    if c.finding then ctx:finding(c.finding) end
    notes(ctx, c.change)
    if c.writes then
      return c.writes(function(res, msg, code, what) return ops.written(ctx, res, msg, code, what) end)
    end
    local res, msg, code = c.write()
    return ops.written(ctx, res, msg, code, c.what)
  end, c.title)
  if c.after_write then c.after_write(outcome) end
  if outcome ~= "applied" then
    if outcome == "dryrun" then
      local d = c.dry or {}
      ctx:verdict { status = d.status or "problem", cause = d.cause, evidence = d.evidence,
                    message = ("%s; the dry run changed nothing"):format(d.message or "a change is needed") }
    end
    return outcome
  end

  local result
  ctx:step(c.verify_step or "verify", function()
    local r = c.verify()
    if r.fixed then
      ctx:verdict { status = "healthy", message = r.message, evidence = r.evidence }
      result = "fixed"
      return
    end
    local cause = r.cause or "not_fixed"
    if r.finding ~= false then
      ctx:finding { severity = "fail", cause = cause, hop = r.hop, message = r.why or r.message, evidence = r.evidence }
    end
    ctx:verdict { status = r.status or "problem", cause = cause, message = r.message, evidence = r.evidence }
    result = "not_fixed"
  end, c.verify_title)
  return result
end

-- hostile(s) -> what makes s unsafe to pass on, or nil: quotes, backslashes, shell
-- substitution ($( and backquotes), ; & | < >, and any control character (a newline above all).
-- Remedies refuse such values with ctx:usage_error before anything runs (exit 2), even where
-- an argv would carry them safely: an operator's value is never worth the doubt.
function M.hostile(s)
  s = tostring(s)
  if s:find("[%c]") then return "a control character (newline, tab, ...)" end
  if s:find("$(", 1, true) or s:find("`", 1, true) then return "a shell substitution ($(...) or backquotes)" end
  if s:find("[\"'\\]") then return "a quote or backslash" end
  if s:find("[;&|<>]") then return "a shell metacharacter (; & | < >)" end
  return nil
end

-- refuse_hostile(ctx, name, value): a usage error (exit 2, nothing run) when value is hostile.
function M.refuse_hostile(ctx, name, value)
  if value == nil then return end
  local why = M.hostile(value)
  if why then ctx:usage_error(("--%s %s: refused, it contains %s"):format(name, ops.shell_quote(value), why)) end
end

return M
