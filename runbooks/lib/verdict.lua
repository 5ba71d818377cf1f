-- runbooks/lib/verdict.lua: the one pure function from collected check results to the verdict.
--
--   local verdict = require "lib.verdict"
--   local v = verdict.decide{
--     facts   = f,            -- addr, domain, mx, ms, ... (for hop names and fixes)
--     checks  = { {name=, hop=, status="ok"|"fail"|"unknown"|"skipped", confirms={cause...},
--                  fails={ {cause=, message=, evidence={...}} }, why=, on_path=true|false} ... },
--     history = { {time=, host=, at="mx"|"next"|"mailserver"|"link", delivered=bool, status=,
--                  reply=, line=, to=, rewritten_to=} ... },   -- every hop's outcomes for the address
--     queued  = { {service=, host=, queue_id=, age=, reason=} ... },
--   }
--   -> { status = "healthy"|"problem"|"escalate", cause=, hop=, message=, evidence={...},
--        fix = {runbook=, args=} | "text", also = {cause...}, unknown = {check names...} }
--
-- The rules, in order:
--   1. a check that FAILS now confirms its cause (current state);
--   2. the most recent outcome for the address counts when nothing was delivered after it:
--      its reply is classified by lib/replies.lua; a cause of that row a check confirms gets the
--      log line as evidence; a cause no check can see now is believed from the reply alone; a
--      cause the checks that could see it now deny becomes `not_reproduced`; a reply no row
--      knows becomes `unexplained_failure` (hop, reply, time and the line as evidence);
--   3. mail waiting in a queue while every check passes is `queue_stuck`;
--   4. the verdict is the confirmed cause FIRST in lib/causes.lua; with none, a failure from
--      rule 2; with none, checks that could not run (`unknown`) on the path give escalate /
--      `incomplete`; only then `healthy`. `unknown` is never read as "no".
-- No I/O, no ctx: tests/lua/verdict.t runs it on recorded check results.
-- Depends on: lib.causes, lib.replies.
local causes = require "lib.causes"
local replies = require "lib.replies"

local M = {}

local function iso(t)
  if t == math.huge then return "now" end
  return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or nil
end

local function ev(host, source, text, time) return { host = host, source = source, text = text, time = time } end

-- resolve(cands, confirmed, ok_confirms) -> cause, how: the first candidate another check
-- confirms ("confirmed"); else the last one no passing check denies ("believed"); else nil,
-- the name of a check that denies them all ("denied")
local function resolve(cands, confirmed, ok_confirms)
  for _, c in ipairs(cands) do if confirmed[c] then return c, "confirmed" end end
  for i = #cands, 1, -1 do
    local spec = causes.BY_NAME[cands[i]]
    if not ok_confirms[cands[i]] and not (spec and spec.confirm_only) then return cands[i], "believed" end
  end
  return nil, ok_confirms[cands[#cands]]
end
M.resolve = resolve

local function add_confirmed(confirmed, cause, fl, check)
  local have = confirmed[cause]
  if have then
    for _, e in ipairs(fl.evidence or {}) do have.evidence[#have.evidence + 1] = e end
    return
  end
  local evs = {}
  for _, e in ipairs(fl.evidence or {}) do evs[#evs + 1] = e end
  confirmed[cause] = { message = fl.message, evidence = evs, hop = fl.hop, check = check }
end

-- confirmed causes from failing checks: cause -> {message, evidence, hop, check}. A failure that
-- is a classified reply (candidates) takes the cause the other checks point at.
local function from_checks(checks)
  local confirmed, unknown, ok_confirms = {}, {}, {}
  for _, c in ipairs(checks) do
    if c.status == "unknown" and c.on_path ~= false then unknown[#unknown + 1] = c end
    if c.status == "ok" then
      for _, cause in ipairs(c.confirms or {}) do ok_confirms[cause] = ok_confirms[cause] or c.name end
    end
    for _, fl in ipairs(c.fails or {}) do
      if fl.cause then add_confirmed(confirmed, fl.cause, fl, c.name) end
    end
  end
  for _, c in ipairs(checks) do
    for _, fl in ipairs(c.fails or {}) do
      if not fl.cause then
        local cause = resolve(fl.candidates or {}, confirmed, ok_confirms) or "unexplained_failure"
        -- a classified refusal stops the mail where its cause lives; an unknown one where it was seen
        local where = cause == "unexplained_failure" and (fl.hop or c.hop) or nil
        add_confirmed(confirmed, cause, { message = fl.message, evidence = fl.evidence, hop = where }, c.name)
      end
    end
  end
  return confirmed, unknown, ok_confirms
end

-- last_failure(history) -> the most recent outcome that is not a delivery, when no delivery came
-- after it (a delivery to another address counts as a failure: it went somewhere else)
local function last_failure(history)
  local list = {}
  for _, h in ipairs(history or {}) do list[#list + 1] = h end
  table.sort(list, function(a, b) return (a.time or 0) < (b.time or 0) end)
  local fail
  for _, h in ipairs(list) do
    if h.delivered and not h.rewritten_to then fail = nil
    else fail = h end
  end
  return fail, list[#list]
end

local function failure_evidence(h)
  return ev(h.host or "?", h.source or "log", ("%s%s%s"):format(h.status or "failed",
    h.reply and h.reply ~= "" and (": " .. h.reply) or "", h.line and (" | " .. h.line) or ""),
    h.time ~= math.huge and iso(h.time) or nil)
end

-- weigh the last failure against the checks (rule 2); returns a candidate {cause, message, evidence, hop}
local function weigh_failure(fail, confirmed, ok_confirms, facts)
  local e = failure_evidence(fail)
  local when = iso(fail.time) or "?"
  if fail.rewritten_to then
    -- a check saw the rewrite in the tables now: the log line is its evidence
    for _, c in ipairs { "delivered_elsewhere", "address_rewritten" } do
      if confirmed[c] then table.insert(confirmed[c].evidence, e); return nil end
    end
    -- rewritten on the mail server (its alias or catch-all): delivered to another mailbox there
    if facts.ms and tostring(fail.hop or ""):sub(1, #facts.ms + 1) == facts.ms .. "." then
      facts.elsewhere_to, facts.elsewhere_where = facts.elsewhere_to or fail.rewritten_to, facts.elsewhere_where or (fail.host .. "'s Postfix")
      facts.elsewhere_how = facts.elsewhere_how or "an alias or catch-all on the mail server"
      return { cause = "delivered_elsewhere", evidence = { e }, hop = "mailserver.alias",
               message = ("the last message for %s (%s) was delivered to %s instead, rewritten on %s"):format(facts.addr, when, fail.rewritten_to, fail.host) }
    end
    facts.rewritten_to, facts.rewritten_on = facts.rewritten_to or fail.rewritten_to, facts.rewritten_on or fail.host
    return { cause = "address_rewritten", evidence = { e }, hop = fail.hop,
             message = ("the last message for %s (%s) was delivered to %s instead"):format(facts.addr, when, fail.rewritten_to) }
  end
  local row = replies.classify(fail.reply or fail.line, fail.at)
  if row then
    local cause, how = resolve(row.causes, confirmed, ok_confirms)
    if how == "confirmed" then
      table.insert(confirmed[cause].evidence, e)
      return nil
    elseif cause then
      return { cause = cause, evidence = { e },
               message = ("the last message for %s (%s) was %s: %s, and nothing was delivered since"):format(
                 facts.addr, when, fail.status or "refused", fail.reply or "") }
    end
    return { cause = "not_reproduced", evidence = { e }, hop = fail.hop or (fail.host and (fail.host .. ".log")),
             message = ("the last message for %s (%s) was %s: %s (as for %s), and nothing was delivered since; but the check %s passes now"):format(
               facts.addr, when, fail.status or "refused", fail.reply or "", row.causes[#row.causes], how) }
  end
  facts.failure_host = fail.host
  return { cause = "unexplained_failure", evidence = { e }, hop = fail.hop or (fail.host and (fail.host .. ".log")),
           message = ("the last message for %s (%s) was %s at %s: %s, nothing was delivered since, and no known cause matches"):format(
             facts.addr, when, fail.status or "not delivered", fail.host or "?", fail.reply or fail.line or "") }
end

local function first_cause(set)
  local first
  for c in pairs(set) do
    if causes.RANK[c] and (not first or causes.RANK[c] < causes.RANK[first]) then first = c end
  end
  return first
end

local function unknown_text(unknown)
  local parts = {}
  for _, c in ipairs(unknown) do parts[#parts + 1] = ("%s (%s)"):format(c.name, c.why or "did not answer") end
  return table.concat(parts, "; ")
end

-- alias_only(facts, confirmed): an alias (not a catch-all) on the mail's path sends the address
-- to other addresses, and the address has no users row of its own (or a disabled one). Postfix
-- rewrites before any mailbox lookup, so that row stops nothing: the finding stays in the trace,
-- the cause is the alias (delivered_elsewhere / address_rewritten), and the fix follows the
-- target (facts.alias_only = the first target). A catch-all is left alone: whether a mailbox of
-- its own would take the address back depends on the site's alias query, so user_missing stays.
local function moved_away(ch, addr)
  if type(ch) ~= "table" or not ch.rewritten or ch.catchall or ch.on_path == false then return false end
  for _, x in ipairs(ch.final or {}) do if tostring(x):lower() == tostring(addr):lower() then return false end end
  return ch.final ~= nil and #ch.final > 0
end
local function alias_only(facts, confirmed)
  if not (confirmed.delivered_elsewhere or confirmed.address_rewritten) then return end
  if not (confirmed.user_missing or confirmed.user_disabled) then return end
  local chains = facts.chains or {}
  local ch = moved_away(chains.mx, facts.addr) and chains.mx or moved_away(chains.ms, facts.addr) and chains.ms
  if not ch then return end
  local own = confirmed.user_missing and "has no mailbox of its own" or "has a disabled mailbox of its own"
  for _, c in ipairs { "user_missing", "user_disabled" } do confirmed[c] = nil end
  facts.alias_only = ch.final[1]
  for _, c in ipairs { "delivered_elsewhere", "address_rewritten" } do
    local x = confirmed[c]
    if x then
      x.message = ("%s %s: the alias on %s sends its mail to %s, whose delivery is what to follow"):format(
        facts.addr, own, ch.service or "the MX", table.concat(ch.final, ", ")) .. " (" .. x.message .. ")"
    end
  end
end

function M.decide(input)
  local facts = input.facts or {}
  local checks = input.checks or {}
  local confirmed, unknown, ok_confirms = from_checks(checks)
  -- mail still waiting is the newest outcome of all: its delay reason is a failure happening now
  local history = {}
  for _, h in ipairs(input.history or {}) do history[#history + 1] = h end
  for _, q in ipairs(input.queued or {}) do
    if q.reason and q.reason ~= "" then history[#history + 1] = { time = math.huge, host = q.host, at = replies.where(q.reason, q.host == facts.mx and "mx" or "mailserver"),
      delivered = false, status = "waiting in the queue (" .. tostring(q.queue_id) .. ")", reply = q.reason or "",
      source = "postqueue -j", hop = q.host == facts.ms and "mailserver.queue" or "mx.queue", queued = q } end
  end
  local fail, latest = last_failure(history)
  if fail then
    local cand = weigh_failure(fail, confirmed, ok_confirms, facts)
    if cand and (cand.cause == "not_reproduced" or cand.cause == "unexplained_failure") and fail.queued and #unknown == 0 then
      cand = nil   -- the path works now and the mail waits: rule 3
    end
    if cand and cand.cause ~= "not_reproduced" and cand.cause ~= "unexplained_failure" then
      confirmed[cand.cause] = { message = cand.message, evidence = cand.evidence, hop = cand.hop, check = "logs" }
    elseif cand then
      facts.log_candidate = cand
    end
  end
  -- rule 3: waiting although every check passes
  if not next(confirmed) and not facts.log_candidate and #unknown == 0 and input.queued and #input.queued > 0 then
    local q = input.queued[1]
    facts.queue_service, facts.stuck_queue_id = q.service, q.queue_id
    confirmed.queue_stuck = {
      message = ("%d message(s) for %s wait in %s although every check of the path passes now: they are retried only at the next queue run"):format(#input.queued, facts.addr, q.service),
      evidence = { ev(q.host or "?", "postqueue -j", ("%s waiting %ds: %s"):format(q.queue_id, q.age or 0, q.reason or "")) },
      hop = q.host == facts.ms and "mailserver.queue" or nil,
    }
    facts.log_candidate = nil
  end
  alias_only(facts, confirmed)
  local unknown_names = {}
  for _, c in ipairs(unknown) do unknown_names[#unknown_names + 1] = c.name end
  local first = first_cause(confirmed)
  local chosen
  if first then
    chosen = confirmed[first]
    chosen.cause = first
  elseif facts.log_candidate then
    chosen = facts.log_candidate
  elseif #unknown > 0 then
    local evs = {}
    for _, c in ipairs(unknown) do evs[#evs + 1] = ev(c.host or "?", c.name, "unknown: " .. (c.why or "did not answer")) end
    chosen = { cause = "incomplete", hop = unknown[1].hop, evidence = evs,
               message = ("nothing was found broken, but %d check(s) on the path could not run: %s"):format(#unknown, unknown_text(unknown)) }
  end
  if not chosen then
    local msg
    if latest and latest.delivered then
      msg = ("mail for %s is delivered: the last message (%s) was saved; every check of the path passes"):format(facts.addr, iso(latest.time) or "?")
    else
      msg = ("every check of the path to %s passes%s"):format(facts.addr, latest and "" or " (and no mail for it in the window)")
    end
    local skipped = {}   -- checks the operator turned off (--no-probe): say so, never imply them
    for _, c in ipairs(input.checks or {}) do if c.status == "skipped" then skipped[#skipped + 1] = c.name end end
    if #skipped > 0 then
      msg = msg:gsub("every check of the path passes", "every check that ran passes") .. (" (not run: %s)"):format(table.concat(skipped, ", "))
    end
    return { status = "healthy", message = msg, evidence = latest and { failure_evidence(latest) } or nil, unknown = {} }
  end
  local spec = causes.BY_NAME[chosen.cause]
  local also = {}
  for c in pairs(confirmed) do if c ~= chosen.cause then also[#also + 1] = c end end
  table.sort(also, function(a, b) return (causes.RANK[a] or 999) < (causes.RANK[b] or 999) end)
  local msg = chosen.message
  if #also > 0 then msg = msg .. " (also found: " .. table.concat(also, ", ") .. ")" end
  if #unknown > 0 and chosen.cause ~= "incomplete" then msg = msg .. " (could not check: " .. unknown_text(unknown) .. ")" end
  return {
    status = spec.status or "problem",
    cause = chosen.cause,
    hop = causes.hop(chosen.hop or spec.hop, facts),
    message = msg,
    evidence = chosen.evidence,
    fix = spec.fix(facts),
    also = also,
    unknown = unknown_names,
  }
end

-- encode(v) -> JSON text of plain data (functions and cycles left out): `--record` prints the
-- verdict's input with it, and tests/fixtures/undelivered/*.json are such records.
local function encode(v, seen)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return named[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then return tostring(v)
  elseif t ~= "table" then return "null" end
  seen = seen or {}
  if seen[v] then return "null" end
  seen[v] = true
  local out = {}
  if #v > 0 or next(v) == nil then
    for _, x in ipairs(v) do out[#out + 1] = encode(x, seen) end
    seen[v] = nil
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k, x in pairs(v) do if type(k) == "string" and type(x) ~= "function" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = encode(k, seen) .. ":" .. encode(v[k], seen) end
  seen[v] = nil
  return "{" .. table.concat(out, ",") .. "}"
end
M.encode = encode

return M
