-- runbook.call: the one choke point every primitive call goes through.
--
--   local call = require "runbook.call"
--   return call(ctx, {
--     family = "postconf", op = "set",     -- classified in runbook.gate; unclassified ops raise
--     host = "ec2",                        -- inventory host (or "local")
--     argv = {...},                        -- exec-class ops: the exact argv that runs; runbook.gate
--                                          -- classifies it (a read only if its table lists it)
--     summary_args = {...},                -- short argument summary for the step line (masked)
--     detail = "exact command / SQL / request",  -- shown with --trace and in would-records (masked)
--     target = "ec2/postfix:relay_domains",-- writes: what changes (required for writes)
--     before = function() return value end,-- writes: current value, read in dry runs too (optional)
--     after = value,                       -- writes: the value it would set (optional)
--     verify = function() return value end,-- writes: re-read after applying (optional)
--     fn = function() return res | nil, msg, code end,   -- the I/O itself
--     summarize = function(res) return "one line" end,   -- optional
--   })
--
-- For a read, spec.detail is read after fn returns, so fn may fill it in (a protocol transcript
-- exists only after the dialogue). For a write it must be known before: it is what the dry
-- run shows.
-- It times the call, emits the trace events (masked by the context), applies the dry-run gate
-- and journals applied writes. A write without --apply returns nil, "dry run: would ...", "dryrun".
-- An applied write is journalled twice: the intent before fn runs (when that line cannot be
-- written the change is NOT made: nil, msg, "journal") and the outcome after it.
-- Depends on: runbook.gate, runbook.core.
local gate = require "runbook.gate"
local core = require "runbook.core"

local SPEC_KEYS = {
  family = "string", op = "string", host = "string", class = "string", argv = "table",
  summary_args = "table", detail = "string", target = "string", before = "function",
  after = "any", verify = "function", fn = "function", summarize = "function",
}

local function check_spec(spec)
  if type(spec) ~= "table" then error("bad argument #2 to 'call' (table expected)", 3) end
  for k, v in pairs(spec) do
    local want = SPEC_KEYS[k]
    if want == nil then error(("call: unknown spec key '%s'"):format(tostring(k)), 3) end
    if want ~= "any" and type(v) ~= want then
      error(("call: spec.%s must be a %s"):format(k, want), 3)
    end
  end
  if not spec.family or not spec.op or not spec.fn then
    error("call: spec needs family, op and fn", 3)
  end
end

local function summarize(spec, res)
  if spec.summarize and res ~= nil then
    local ok, s = pcall(spec.summarize, res)
    if ok and s then return tostring(s) end
  end
  return nil
end

-- Runs a read that belongs to a write (before/verify) without letting it raise past us.
local function probe(fn)
  if not fn then return nil end
  local ok, v, msg = pcall(fn)
  if not ok then return { error = tostring(v) } end
  if v == nil and msg then return { error = tostring(msg) } end
  return v
end

local function call(ctx, spec)
  check_spec(spec)
  local class = gate.classify(spec.family, spec.op, spec.argv)
  if spec.class and spec.class ~= class then
    error(("call: %s.%s declared '%s' but runbook.gate classifies it '%s'"):format(
      spec.family, spec.op, spec.class, class), 2)
  end
  if class == "write" and not (spec.target and spec.detail) then
    error(("call: write %s.%s must say what it would do (target and detail)"):format(spec.family, spec.op), 2)
  end
  local name = spec.family .. "." .. spec.op
  local remaining = core.remaining()
  if remaining and remaining <= 0 then
    return nil, "run deadline exceeded before " .. name, "timeout"
  end

  -- On a terminal the operator sees which call is running while it blocks (JSON ignores it).
  ctx:emit { event = "progress", transient = true, message = ("%s %s"):format(name, spec.host or "") }

  if class == "read" then
    local t0 = core.now()
    local res, msg, code = spec.fn()
    local ms = (core.now() - t0) * 1000
    ctx:emit {
      event = "call", op = name, host = spec.host, class = "read", args = spec.summary_args,
      ms = ms, outcome = res ~= nil and "ok" or (code or "error"), error = res == nil and msg or nil,
      summary = summarize(spec, res), detail = spec.detail,
    }
    return res, msg, code
  end

  -- A write. Show what it would do, with the current value where it can be known.
  local before = probe(spec.before)
  local record = {
    op = name, host = spec.host, target = spec.target, detail = spec.detail,
    before = before, after = spec.after, args = spec.summary_args,
  }
  if not ctx.apply then
    ctx.counters.would = ctx.counters.would + 1
    local ev = { event = "would" }
    for k, v in pairs(record) do ev[k] = v end
    ctx:emit(ev)
    return nil, ("dry run: would %s %s"):format(name, spec.target), "dryrun"
  end
  if not ctx:confirm(record) then
    ctx:emit { event = "write", op = name, host = spec.host, target = spec.target,
               detail = spec.detail, outcome = "declined" }
    return nil, "declined by the operator", "declined"
  end
  -- Intent first: no journal line, no change.
  local jok, jerr = ctx:journal({ op = name, host = spec.host, target = spec.target,
    detail = spec.detail, before = before, after = spec.after, outcome = "intent" }, "intent")
  if not jok then
    local why = ("%s (the change was not made)"):format(tostring(jerr))
    ctx:emit { event = "write", op = name, host = spec.host, target = spec.target,
               detail = spec.detail, outcome = "not_journaled", error = why }
    return nil, why, "journal"
  end
  local t0 = core.now()
  local res, msg, code = spec.fn()
  local ms = (core.now() - t0) * 1000
  local verified = res ~= nil and probe(spec.verify) or nil
  local outcome = res ~= nil and "ok" or (code or "error")
  ctx.counters.applied = ctx.counters.applied + (res ~= nil and 1 or 0)
  local ev = {
    event = "write", op = name, host = spec.host, target = spec.target, detail = spec.detail,
    before = before, after = spec.verify and verified or spec.after, ms = ms, outcome = outcome,
    error = res == nil and msg or nil, summary = summarize(spec, res), args = spec.summary_args,
  }
  ctx:emit(ev)
  local ok, aerr = ctx:journal(ev, "outcome")
  if not ok then
    ctx.journal_failed = true
    ctx:emit { event = "note", level = "error",
               message = "audit journal: the outcome of an applied change was not written: " .. tostring(aerr) }
  end
  return res, msg, code
end

return call
