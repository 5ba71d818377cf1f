-- runbooks/queue-flush.lua: the cheat sheet's "mail stuck in a queue" remedy: postqueue -i QID
-- for one message, postqueue -f for all, on the side that holds it; then its new state.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local WAIT = 10   -- seconds to wait for the queue manager to deliver or defer again

-- one queue entry as one line: "QID deferred 2h 03m sender -> rcpt (reason)"
local function entry_line(m, now)
  local rc = {}
  for _, r in ipairs(m.recipients or {}) do
    rc[#rc + 1] = tostring(r.address) .. (r.delay_reason and (" (" .. r.delay_reason .. ")") or "")
  end
  return ("%s %s %s from <%s> -> %s"):format(m.queue_id, tostring(m.queue_name),
    ops.fmt_age(now - (tonumber(m.arrival_time) or now)), tostring(m.sender), table.concat(rc, ", "))
end

return {
  description = "Flush a Postfix queue: one message (postqueue -i) or all (postqueue -f), and report what happened",
  kind = "remedy",
  help = [[
What it does: lists the queue of the Postfix service (postqueue -j; document Q1): what waits,
since when and why. With --queue-id it asks Postfix to retry that one message now
(postqueue -i QID); without, every deferred message (postqueue -f). Flushing everything is
heavy: every deferred message is retried at once against next hops that may still be down.
Prefer --queue-id, and fix the cause first (the delay reason says what it is).
Nothing queued (or the message no longer there): nothing to do (exit 0). A message on hold
is not released by a flush (postsuper -H): reported, not changed.
What it changes: the time of the next delivery attempt; nothing else.
How to verify: after --apply it reads the queue again for up to 10 s: the message left the
queue (delivered or bounced: follow it with trace-message) or it is deferred again, with the
new reason.]],
  args = {
    { name = "service", type = "service",
      help = "the Postfix service that holds the mail, HOST/SERVICE (default: the MX, mail.mx_host + /postfix)" },
    { name = "queue-id", type = "queue_id", help = "flush only this message (postqueue -i)" },
  },
  hosts = {},                 -- whichever host --service names (default: the MX)
  examples = {
    "runbook run queue-flush --service ec2/postfix --queue-id 848FAA727E2",
    "runbook run queue-flush --service ec2/postfix --queue-id 848FAA727E2 --apply",
    "runbook run queue-flush --service dell/postfix --apply     # everything: heavy",
  },

  run = function(ctx)
    -- --service is checked against the inventory before the run (type service); the default
    -- comes from the inventory and is checked here, before any primitive runs.
    local svc = ctx.args.service or ops.mx_postfix(ctx)
    if not ops.service_of(ctx, svc) then
      ctx:usage_error(("the default service %s (mail.mx_host + /postfix) is not in the inventory: name one with --service HOST/SERVICE"):format(svc))
    end
    local qid = ctx.args["queue-id"]

    local function read_queue()
      local q, msg, code = ctx:postqueue(svc)
      return ops.must(q, msg, code, "postqueue -j on " .. svc)
    end
    local function find(q)
      for _, m in ipairs(q) do if m.queue_id == qid then return m end end
    end

    local state = ctx:step("queue", function()
      local q = read_queue()
      local now = os.time()
      if #q == 0 then ctx:note(svc .. ": the queue is empty") end
      for i, m in ipairs(q) do
        if i <= 20 then ctx:note("  " .. entry_line(m, now)) end
      end
      if #q > 20 then ctx:note(("  ... and %d more"):format(#q - 20)) end
      return { q = q }
    end, "what waits (document Q1: postqueue -p)")
    if not state then return end
    local q = state.q

    local target
    if qid then
      target = find(q)
      if not target then
        ctx:verdict { status = "healthy", message = ("%s is not in the queue of %s: nothing to flush (delivered, bounced or never there: trace-message --queue-id %s)"):format(qid, svc, qid) }
        return
      end
      if target.queue_name == "hold" then
        ctx:verdict { status = "problem", cause = "on_hold",
                      message = ("%s is on hold in %s: a flush does not release it; release it with postsuper -H %s after checking why it was held"):format(qid, svc, qid) }
        return
      end
    else
      local waiting = 0
      for _, m in ipairs(q) do if m.queue_name ~= "hold" then waiting = waiting + 1 end end
      if waiting == 0 then
        ctx:verdict { status = "healthy", message = ("nothing waits in the queue of %s%s: nothing to flush"):format(svc,
          #q > 0 and (" (%d on hold)"):format(#q) or "") }
        return
      end
    end

    local finding, change
    if qid then
      finding = { severity = "warn", cause = "queued", hop = svc, message = "waiting: " .. entry_line(target, os.time()) }
      change = ("%s: %s -> retried now (postqueue -i %s)"):format(qid, target.queue_name, qid)
    else
      finding = { severity = "warn", cause = "queued", hop = svc, message = ("%d message(s) wait in the queue of %s"):format(#q, svc) }
      change = { ("flushing everything is heavy: all %d message(s) are retried at once; prefer --queue-id QID"):format(#q),
                 ("queue of %s: %d waiting -> retried now (postqueue -f)"):format(svc, #q) }
    end
    return remedy.change(ctx, {
      step = "flush", title = qid and "postqueue -i QID" or "postqueue -f (everything)",
      finding = finding, change = change,
      write = function() return ctx:postqueue_flush(svc, qid) end,
      what = qid and ("message " .. qid) or ("the queue of " .. svc),
      dry = { cause = "queued", message = ("%s waits in %s"):format(qid or (#q .. " message(s)"), svc) },
      verify_title = "read the queue again: left, or deferred again and why",
      verify = function()
        local t0 = ctx:elapsed()
        local now_q, left
        repeat
          ops.pause(ctx, 1)
          now_q = read_queue()
          if qid then
            left = find(now_q)
            -- still active: the queue manager is on it; wait for the outcome
            if left and left.queue_name ~= "active" and ctx:elapsed() - t0 > 2 then break end
          else
            left = nil
            for _, m in ipairs(now_q) do
              if m.queue_name == "active" then left = m end
            end
            if not left then break end
          end
        until (qid and not left) or ctx:elapsed() - t0 > WAIT
        if qid then
          if not left then
            return { fixed = true, message = ("%s left the queue of %s (delivered or bounced: trace-message --queue-id %s shows which)"):format(qid, svc, qid) }
          end
          return { fixed = false, cause = "deferred_again", hop = svc, why = "still queued: " .. entry_line(left, os.time()),
                   message = ("%s is %s again in %s: fix the cause first (%s)"):format(qid, tostring(left.queue_name), svc,
                     tostring((left.recipients[1] or {}).delay_reason or "no reason given")) }
        end
        for i, m in ipairs(now_q) do if i <= 20 then ctx:note("  " .. entry_line(m, os.time())) end end
        if #now_q == 0 then
          return { fixed = true, message = ("the queue of %s is empty after the flush (%d message(s) left it)"):format(svc, #q) }
        end
        return { fixed = false, cause = "deferred_again", hop = svc,
                 why = ("%d of %d message(s) still queued after the flush"):format(#now_q, #q),
                 message = ("%d message(s) still wait in %s (%d left it): see their reasons above"):format(#now_q, svc, #q - #now_q) }
      end,
    })
  end,
}
