-- runbooks/mail-stats.lua: the MX's mail of the last hour per recipient domain (document 2.2 A
-- "ドメイン別に集計"): received, sent/delivered, deferred, bounced, rejected. Reads logs only.
local ops = require "lib.mailops"
local maillog = require "runbook.maillog"

local COLUMNS = { "received", "sent", "deferred", "bounced", "rejected" }

return {
  description = "The MX's mail per recipient domain: received, sent/delivered, deferred, bounced, rejected",
  kind = "report",
  help = [[
What it does: reads the MX's Postfix log since --since (docker logs --since; document 2.2 A,
"count recipients per domain") and follows every queue file with the log tracker. Per
recipient domain it counts, one per recipient:
  received  accepted from an SMTP client or submitted locally (queued; not Postfix's own bounces)
  sent      relayed to the next hop or delivered (status=sent)
  deferred  still deferred at its last attempt (temporary failure: it waits in the queue)
  bounced   bounced or expired (permanent failure; includes the bounces Postfix generated)
  rejected  refused at SMTP time (NOQUEUE reject: relay access denied, unknown user, ...)
What it changes: nothing.
Exit 0 when nothing was deferred, bounced or rejected, 1 otherwise.]],
  args = {
    { name = "since", type = "duration", default = "1h", help = "how far back to count" },
    { name = "service", type = "string", pattern = ops.SERVICE_PATTERN,
      help = "the Postfix whose log to count, HOST/SERVICE (default: the MX, mail.mx_host + /postfix)" },
  },
  hosts = { "@mx" },          -- the MX gateway (mail.mx_host)
  examples = {
    "runbook run mail-stats",
    "runbook run mail-stats --since 24h --format json",
  },

  run = function(ctx)
    local svc = ops.need_service(ctx, ctx.args.service or ops.mx_postfix(ctx))
    local since = os.time() - ctx.args.since
    local host = svc:match("^(.-)/")

    local msgs = ctx:step("read", function()
      local tr = maillog.tracker { since = since, max_messages = 100000 }
      local logs, msg, code = ctx:docker_logs(svc, { since = since })
      logs = ops.must(logs, msg, code, "docker logs " .. svc)
      local n = 0
      for rec in logs do
        tr:feed_line(ops.log_line(rec), { host = host })
        n = n + 1
      end
      local st = tr:stats()
      ctx:note(("%s: %d log line(s) since %s, %d mail line(s)%s"):format(svc, n, ops.utc(since), st.mail_lines or 0,
        (st.evicted or 0) > 0 and (", %d queue file(s) evicted: counts are a lower bound"):format(st.evicted) or ""))
      return tr:messages()
    end, "the MX's log since --since (document 2.2: docker logs --since)")
    if not msgs then return end

    local per, order, total = {}, {}, {}
    for _, c in ipairs(COLUMNS) do total[c] = 0 end
    local function count(d, col)
      local e = per[d]
      if not e then
        e = {}
        for _, c in ipairs(COLUMNS) do e[c] = 0 end
        per[d] = e
        order[#order + 1] = d
      end
      e[col] = e[col] + 1
      total[col] = total[col] + 1
    end
    for _, m in ipairs(msgs) do
      local d = m.to and tostring(m.to):match("@(.+)$")
      d = d and d:lower() or "(unknown)"
      local first = m.hops[1] or {}
      if first.kind == "reject" then
        count(d, "rejected")
      else
        -- received: from an SMTP client or a local submission; not the bounces Postfix made
        if first.client or (first.from ~= nil and first.from ~= "") then count(d, "received") end
        local s = m.final_status
        if s == "sent" or s == "delivered" then count(d, "sent")
        elseif s == "deferred" then count(d, "deferred")
        elseif s == "bounced" or s == "expired" or s == "failed" then count(d, "bounced") end
      end
    end
    table.sort(order)

    ctx:step("per-domain", function()
      local w = 24
      for _, d in ipairs(order) do if #d > w then w = #d end end
      local head = ("%-" .. w .. "s %9s %9s %9s %9s %9s"):format("domain", table.unpack(COLUMNS))
      ctx:note(head)
      for _, d in ipairs(order) do
        local e = per[d]
        ctx:note(("%-" .. w .. "s %9d %9d %9d %9d %9d"):format(d, e.received, e.sent, e.deferred, e.bounced, e.rejected))
      end
      ctx:note(("%-" .. w .. "s %9d %9d %9d %9d %9d"):format("total", total.received, total.sent, total.deferred, total.bounced, total.rejected))
      for _, d in ipairs(order) do
        local e = per[d]
        if e.deferred + e.bounced + e.rejected > 0 then
          ctx:finding { severity = "warn", cause = "mail_not_delivered", hop = svc,
                        message = ("%s: %d deferred, %d bounced, %d rejected since %s"):format(d, e.deferred, e.bounced, e.rejected, ops.utc(since)) }
        end
      end
    end, "per recipient domain (document 2.2 A)")

    local bad = total.deferred + total.bounced + total.rejected
    ctx:verdict { status = bad == 0 and "healthy" or "problem", cause = bad > 0 and "mail_not_delivered" or nil,
                  message = ("%s since %s: %d received, %d sent, %d deferred, %d bounced, %d rejected in %d domain(s)"):format(svc,
                    ops.utc(since), total.received, total.sent, total.deferred, total.bounced, total.rejected, #order) }
  end,
}
