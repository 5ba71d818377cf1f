-- runbooks/mail-stats.lua: the MX's mail of the last hour per recipient domain (document 2.2 A
-- "ドメイン別に集計"): received, sent/delivered, deferred, bounced, rejected. Reads logs only.
local ops = require "lib.mailops"
local maillog = require "runbook.maillog"

local COLUMNS = maillog.COLUMNS

return {
  description = "The MX's mail per recipient domain: received, sent/delivered, deferred, bounced, rejected",
  kind = "report",
  help = [[
What it does: reads the MX's Postfix log since --since (docker logs --since; document 2.2 A,
"count recipients per domain") and follows every queue file with the log tracker. Per
recipient domain, the columns are (one definition each; maillog.domain_counts):
  received  messages that entered the queue inside the window (smtpd client= or pickup), once
            per message: once in each of its recipient domains' rows, once in the total. A
            retry (qmgr's "from=... (queue active)" again) is not a new message, nor is a bounce
            Postfix made itself.
  sent      recipients whose final status is sent (handed to the next hop) or delivered
  deferred  recipients still deferred at the end of the window (the last attempt in it was
            deferred, nothing came after it)
  bounced   recipients bounced or expired (permanent failure, including mail returned after
            the queue lifetime), or refused by Dovecot after Postfix handed over
  rejected  refusals at SMTP time: NOQUEUE rejects at any stage, MAIL-stage rejects included
            (they name no recipient: counted under "(unknown)"), and queue files rejected by
            cleanup or a milter; rsyslog's "message repeated N times" counts N
A queue file with no delivery attempt yet (just arrived, or the delivery agents are stuck) is
counted as received under "(not yet attempted)" and reported as waiting.
What it changes: nothing.
Exit 0 when nothing was deferred, bounced, rejected or left waiting, 1 otherwise.]],
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
      local msgs = tr:messages()
      local st = tr:stats()
      ctx:note(("%s: %d log line(s) since %s, %d mail line(s)%s"):format(svc, n, ops.utc(since), st.mail_lines or 0,
        (st.evicted or 0) > 0 and (", %d queue file(s) evicted: counts are a lower bound"):format(st.evicted) or ""))
      local unread = (st.unrecognised or 0) + (st.unreadable or 0)
      if unread > 0 then
        ctx:note(("%d mail line(s) the parser could not read (kept with their queue file, not counted)"):format(unread))
      end
      if (st.zone_unknown or 0) > 0 then
        ctx:note(("%d queue file(s) or session(s) with stamps without a zone, read as UTC"):format(st.zone_unknown))
      end
      return msgs
    end, "the MX's log since --since (document 2.2: docker logs --since)")
    if not msgs then return end

    local counts = maillog.domain_counts(msgs, { since = since })
    local per, order, total = counts.rows, counts.order, counts.total

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
      if counts.waiting > 0 then
        ctx:finding { severity = "warn", cause = "mail_waiting", hop = svc,
                      message = ("%d message(s) in the queue with no delivery attempt logged yet"):format(counts.waiting) }
      end
      for _, d in ipairs(order) do
        local e = per[d]
        if e.deferred + e.bounced + e.rejected > 0 then
          ctx:finding { severity = "warn", cause = "mail_not_delivered", hop = svc,
                        message = ("%s: %d deferred, %d bounced, %d rejected since %s"):format(d, e.deferred, e.bounced, e.rejected, ops.utc(since)) }
        end
      end
    end, "per recipient domain (document 2.2 A)")

    local bad = total.deferred + total.bounced + total.rejected + counts.waiting
    ctx:verdict { status = bad == 0 and "healthy" or "problem", cause = bad > 0 and "mail_not_delivered" or nil,
                  message = ("%s since %s: %d received, %d sent, %d deferred, %d bounced, %d rejected in %d domain(s)"):format(svc,
                    ops.utc(since), total.received, total.sent, total.deferred, total.bounced, total.rejected, #order) }
  end,
}
