-- runbooks/queue-report.lua: what waits in the Postfix queues, since when and why, per
-- recipient domain (document Q1: postqueue -p on each side). Reads only.
local ops = require "lib.mailops"

return {
  description = "What waits in the Postfix queues: per recipient domain, since when and why",
  kind = "report",
  help = [[
What it does: reads the queue of each Postfix service (postqueue -j; document Q1): by default
the MX's and the mail server's, or the one --service names. It prints every queued message
(queue id, queue, age, sender, recipients and Postfix's delay reason) and a summary per
recipient domain: how many wait, the oldest, and the reasons.
What it changes: nothing.
Exit 0 when nothing waits, 1 when mail waits (deferred mail is delayed by hours: fix the
reason, then queue-flush).]],
  args = {
    { name = "service", type = "service",
      help = "only this Postfix service, HOST/SERVICE (default: the MX's and the mail server's)" },
  },
  hosts = { "@mx", "@mailserver" },
  examples = {
    "runbook run queue-report",
    "runbook run queue-report --service ec2/postfix",
  },

  run = function(ctx)
    local services = ctx.args.service and { ops.need_service(ctx, ctx.args.service) } or ops.postfix_services(ctx)
    local total, worst, unread = 0, nil, {}

    for _, svc in ipairs(services) do
      local ok = ctx:step(svc, function()
        local q, msg, code = ctx:postqueue(svc)
        q = ops.must(q, msg, code, "postqueue -j on " .. svc)
        local now = os.time()
        if #q == 0 then
          ctx:note(svc .. ": empty")
          return true
        end
        total = total + #q
        local domains, order = {}, {}
        for _, m in ipairs(q) do
          local age = now - (tonumber(m.arrival_time) or now)
          local rc = {}
          for _, r in ipairs(m.recipients or {}) do
            rc[#rc + 1] = tostring(r.address)
            local d = tostring(r.address):match("@(.+)$")
            d = d and d:lower() or "(no domain)"
            local e = domains[d]
            if not e then
              e = { name = d, n = 0, oldest = 0, reasons = {}, reason_order = {}, queues = {} }
              domains[d] = e
              order[#order + 1] = d
            end
            e.n = e.n + 1
            if age > e.oldest then e.oldest, e.oldest_id = age, m.queue_id end
            e.queues[m.queue_name or "?"] = (e.queues[m.queue_name or "?"] or 0) + 1
            local why = r.delay_reason or ("(" .. tostring(m.queue_name) .. ", no reason yet)")
            if not e.reasons[why] then e.reasons[why] = 0; e.reason_order[#e.reason_order + 1] = why end
            e.reasons[why] = e.reasons[why] + 1
            if not worst or age > worst.age then worst = { age = age, svc = svc, id = m.queue_id, why = why, rcpt = r.address } end
          end
          ctx:note(("%s  %-8s %-8s since %s  <%s> -> %s"):format(m.queue_id, tostring(m.queue_name), ops.fmt_age(age),
            ops.utc(tonumber(m.arrival_time)), tostring(m.sender), table.concat(rc, ", ")))
        end
        table.sort(order, function(a, b) return domains[a].n > domains[b].n or (domains[a].n == domains[b].n and a < b) end)
        ctx:note(("%s: %d message(s) queued; per recipient domain:"):format(svc, #q))
        for _, d in ipairs(order) do
          local e = domains[d]
          local qs = {}
          for name, n in pairs(e.queues) do qs[#qs + 1] = ("%s %d"):format(name, n) end
          table.sort(qs)
          ctx:note(("  %-24s %3d recipient(s)  oldest %s (%s)  [%s]"):format(d, e.n, ops.fmt_age(e.oldest), e.oldest_id, table.concat(qs, ", ")))
          for _, why in ipairs(e.reason_order) do
            ctx:note(("      %3d x %s"):format(e.reasons[why], why))
          end
          ctx:finding { severity = "warn", cause = "queued", hop = svc,
                        message = ("%d recipient(s) at %s wait in %s, the oldest for %s"):format(e.n, d, svc, ops.fmt_age(e.oldest)),
                        evidence = { { host = svc:match("^(.-)/"), source = "postqueue -j", text = e.reason_order[1] } } }
        end
        return true
      end, "postqueue -j: what waits, since when, why")
      if not ok then unread[#unread + 1] = svc end
    end

    if total == 0 and #unread > 0 then
      ctx:verdict { status = "problem", cause = "queue_unreadable",
                    message = ("could not read the queue of %s"):format(table.concat(unread, ", ")) }
    elseif total == 0 then
      ctx:verdict { status = "healthy", message = ("nothing waits in %s"):format(table.concat(services, ", ")) }
    else
      ctx:verdict { status = "problem", cause = "queued", hop = worst and worst.svc,
                    message = ("%d message(s) wait; the oldest: %s in %s for %s (%s)"):format(total, worst.id, worst.svc,
                      ops.fmt_age(worst.age), worst.why),
                    fix = { runbook = "queue-flush", args = { service = worst.svc, ["queue-id"] = worst.id } } }
    end
  end,
}
