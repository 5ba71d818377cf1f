-- runbooks/trace-message.lua: follow one message across the hops (document 5.2): the MX's
-- Postfix, the mail server's Postfix, Dovecot; a per-hop timeline, where the time went and
-- where it stopped. Reads logs only.
local ops = require "lib.mailops"
local maillog = require "runbook.maillog"

local DELAYS = {
  { "before_qmgr", "a", "before the queue manager (receiving; for a retry also the wait in the deferred queue)" },
  { "in_qmgr", "b", "in the queue manager (waiting: deferred, busy)" },
  { "conn_setup", "c", "connection setup (DNS, TCP, greeting, TLS)" },
  { "transmission", "d", "transmission (the next hop's answer)" },
}

local function secs(v) return v and ("%.2fs"):format(v) or "?" end

return {
  description = "Follow one message (by Message-ID or queue id) across the MX, the mail server's Postfix and Dovecot",
  kind = "report",
  help = [[
What it does: finds the message in the logs of the MX's Postfix, the mail server's Postfix and
Dovecot (docker logs --since; document 5.2 "follow one message by message id"), learns its queue
ids and recipients, then follows every recipient hop by hop with the log tracker: the MX's
queue file, the relay to the mail server (queued as / LMTP session), Dovecot's "saved mail".
It prints a timeline per recipient, where the time went (Postfix delays a/b/c/d: before the
queue manager, in it, connection setup, transmission) and where it stopped.
What it changes: nothing (reads logs only).
Exit 0 when every recipient's copy was delivered, 1 when one stopped or nothing was found.]],
  args = {
    { name = "message-id", type = "string", pattern = "^<?[^%s<>]+>?$", help = "the Message-ID header, with or without <>" },
    { name = "queue-id", type = "queue_id", help = "a Postfix queue id from any hop (e.g. from the sender's bounce or 250 reply)" },
    { name = "since", type = "duration", default = "1h", help = "how far back to read the logs" },
  },
  hosts = { "@mx", "@mailserver" },
  examples = {
    "runbook run trace-message --message-id '<20261128115342.015678@vm>'",
    "runbook run trace-message --queue-id 848FAA727E2 --since 6h",
  },

  run = function(ctx)
    local msgid = ctx.args["message-id"] and ctx.args["message-id"]:gsub("^<", ""):gsub(">$", "")
    local qid = ctx.args["queue-id"]
    if not msgid and not qid then
      ctx:verdict { status = "problem", cause = "usage", message = "give --message-id or --queue-id" }
      return
    end
    local since = os.time() - ctx.args.since
    local needle = msgid or qid
    local services = {}
    for _, s in ipairs { { ops.mx_postfix(ctx), "mx-postfix" }, { ops.ms_postfix(ctx), "ms-postfix" }, { ops.dovecot(ctx), "dovecot" } } do
      if ops.service_of(ctx, s[1]) then services[#services + 1] = { spec = s[1], host = s[1]:match("^(.-)/"), label = s[2] } end
    end

    local unread = {}   -- services whose queue could not be read
    -- 1. where does the id appear: queue ids, recipients, message-id
    local found = ctx:step("find", function()
      local qids, rcpts, rcpt_list, mid, waiting = {}, {}, {}, msgid, {}
      local function learn(r)
        if r.queue_id and r.queue_id ~= "NOQUEUE" then qids[r.queue_id] = true end
        for _, a in ipairs { r.to, r.orig_to, r.family == "dovecot" and r.user or nil } do
          if a and a:find("@") and not rcpts[a:lower()] then
            rcpts[a:lower()] = true
            rcpt_list[#rcpt_list + 1] = a:lower()
          end
        end
        if r.message_id and not mid then mid = r.message_id:gsub("^<", ""):gsub(">$", "") end
      end
      local function grep(svc, words)
        local logs, msg, code = ctx:docker_logs(svc.spec, { since = since, grep = words })
        if not logs then
          ctx:finding { severity = "warn", cause = "logs_unavailable", hop = svc.spec, message = ("cannot read %s's log: %s"):format(svc.spec, tostring(msg)) }
          return 0
        end
        local n = 0
        for rec in logs do
          local r = maillog.parse(ops.log_line(rec))
          if r then learn(r); n = n + 1 end
        end
        return n
      end
      local hits = {}
      for _, svc in ipairs(services) do hits[svc.spec] = grep(svc, { needle }) end
      -- the queue ids found by message-id: their to= lines name the recipients
      local more = {}
      for q in pairs(qids) do if q ~= needle then more[#more + 1] = q end end
      table.sort(more)
      if #more > 0 and #rcpt_list == 0 then
        for _, svc in ipairs(services) do
          if svc.label ~= "dovecot" and (hits[svc.spec] or 0) > 0 then grep(svc, more) end
        end
      end
      -- no delivery attempt logged yet: the queue itself names the recipients (and why it waits)
      if next(qids) and #rcpt_list == 0 then
        for _, svc in ipairs(services) do
          if svc.label ~= "dovecot" and (hits[svc.spec] or 0) > 0 then
            local q, qmsg = ctx:postqueue(svc.spec)
            if not q then   -- could not read the queue: not "nothing waits"
              unread[#unread + 1] = ("%s (%s)"):format(svc.spec, tostring(qmsg))
              ctx:finding { severity = "warn", cause = "queue_unreadable", hop = svc.spec,
                            message = ("cannot read %s's queue: %s"):format(svc.spec, tostring(qmsg)) }
            end
            for _, m in ipairs(q or {}) do
              if qids[m.queue_id] then
                for _, r in ipairs(m.recipients or {}) do
                  learn { to = r.address }
                  waiting[#waiting + 1] = { svc = svc.spec, qid = m.queue_id, queue = m.queue_name, to = r.address, reason = r.delay_reason }
                  ctx:note(("%s waits in the %s queue of %s for <%s>: %s"):format(m.queue_id, tostring(m.queue_name), svc.spec,
                    tostring(r.address), tostring(r.delay_reason or "no delivery attempt yet")))
                end
              end
            end
          end
        end
      end
      local seen = {}
      for spec, n in pairs(hits) do if n > 0 then seen[#seen + 1] = spec end end
      table.sort(seen)
      local ql = {}
      for q in pairs(qids) do ql[#ql + 1] = q end
      table.sort(ql)
      ctx:note(("%s appears in %s; queue ids: %s; recipients: %s"):format(needle,
        #seen > 0 and table.concat(seen, ", ") or "no log", #ql > 0 and table.concat(ql, " ") or "-",
        #rcpt_list > 0 and table.concat(rcpt_list, ", ") or "-"))
      return { qids = qids, rcpts = rcpt_list, message_id = mid, waiting = waiting }
    end, "find the message in every hop's log since --since")
    if not found then return end
    if #found.rcpts == 0 and #unread > 0 then
      ctx:verdict { status = "escalate", cause = "queue_unreadable",
                    message = ("%s is in the logs (queue id %s) but no recipient was logged and the queue could not be read: %s"):format(
                      needle, table.concat((function() local l = {} for q in pairs(found.qids) do l[#l + 1] = q end table.sort(l) return l end)(), " "),
                      table.concat(unread, "; ")) }
      return
    end
    if #found.rcpts == 0 then
      ctx:verdict { status = "problem", cause = "not_found",
                    message = ("%s is not in the logs since %s (or no recipient was logged for it yet): try a longer --since"):format(needle, ops.utc(since)) }
      return
    end

    -- 2. follow every recipient across the hops
    local host_names = {}
    local function host_of(h) local inv = host_names[h] return inv and inv ~= h and (inv .. " (" .. h .. ")") or tostring(h) end
    local msgs = ctx:step("follow", function()
      local tr = maillog.tracker { addr = found.rcpts, since = since }
      for _, svc in ipairs(services) do
        local logs, msg = ctx:docker_logs(svc.spec, { since = since })
        if logs then
          local named = 0
          for rec in logs do
            local line = ops.log_line(rec)
            -- the log's own host name ("mx") -> the inventory's ("ec2"), for the timeline
            if named < 20 then
              local r = maillog.parse(line)
              if r and r.host then host_names[r.host] = svc.host; named = named + 1 end
            end
            tr:feed_line(line, { host = svc.host, source = svc.label })
          end
          local e = logs.err and { logs:err() }
          if e and e[1] then ctx:finding { severity = "warn", cause = "logs_incomplete", hop = svc.spec, message = ("%s's log stopped early: %s"):format(svc.spec, tostring(e[1])) } end
        else
          ctx:finding { severity = "warn", cause = "logs_unavailable", hop = svc.spec, message = ("cannot read %s's log: %s"):format(svc.spec, tostring(msg)) }
        end
      end
      local out, by_key = {}, {}
      for _, m in ipairs(tr:messages()) do
        local mine = found.message_id and m.message_id == found.message_id
        for _, h in ipairs(m.hops) do
          if h.queue_id and (found.qids[h.queue_id] or h.queue_id == qid) then mine = true end
          if h.queued_as and h.queued_as == qid then mine = true end
        end
        if mine then
          -- later attempts of a queue file the tracker split off: one message, its last state
          local first = m.hops[1] or {}
          local key = tostring(first.host) .. "/" .. tostring(first.queue_id) .. "/" .. tostring(m.to)
          local prev = by_key[key]
          if prev and first.queue_id and first.queue_id ~= "NOQUEUE" then
            prev.later = prev.later or {}
            prev.later[#prev.later + 1] = m
          else
            by_key[key] = m
            out[#out + 1] = m
          end
        end
      end
      return out
    end, "follow each recipient hop by hop with the log tracker")
    if not msgs then return end
    if #msgs == 0 and #found.waiting > 0 then
      local w = found.waiting[1]
      ctx:verdict { status = "problem", cause = "message_queued", hop = w.svc,
                    message = ("%s (%s) waits in the %s queue of %s for %s: %s"):format(needle, w.qid, tostring(w.queue), w.svc,
                      tostring(w.to), tostring(w.reason or "no delivery attempt logged yet")) }
      return
    end
    if #msgs == 0 then
      ctx:verdict { status = "problem", cause = "not_found", message = ("found %s but could not follow it across the hops"):format(needle) }
      return
    end

    -- 3. the timeline
    local stopped, delivered = {}, 0
    local function show_hops(hops, first_n)
      for n, h in ipairs(hops) do
        local t = ops.utc(h.arrived or h.first_time or h.time)
        n = n + (first_n or 0)
        if h.kind == "postfix" then
          ctx:note(("  hop %d  %s %s  postfix queue %s%s: from %s, %s %s%s"):format(n, t, host_of(h.host), tostring(h.queue_id),
            h.client and (" (client " .. h.client .. ")") or "", tostring(h.from or "?"),
            tostring(h.status), h.relay and ("via " .. h.relay) or "", h.reply and (" (" .. h.reply .. ")") or ""))
          if #(h.attempts or {}) > 1 then ctx:note(("          %d delivery attempts"):format(#h.attempts)) end
          if h.delays then
            ctx:note(("          delay %s: a=%s b=%s c=%s d=%s"):format(secs(h.delay), secs(h.delays.before_qmgr),
              secs(h.delays.in_qmgr), secs(h.delays.conn_setup), secs(h.delays.transmission)))
          end
        elseif h.kind == "dovecot" then
          ctx:note(("  hop %d  %s %s  dovecot session %s: %s%s%s"):format(n, t, host_of(h.host), tostring(h.session), tostring(h.status),
            h.mailbox and (" to " .. h.mailbox) or "", h.error and (" (" .. h.error .. ")") or ""))
        else
          ctx:note(("  hop %d  %s %s  rejected at %s: %s %s"):format(n, t, host_of(h.host), tostring(h.stage), tostring(h.code), tostring(h.reason)))
        end
      end
    end
    ctx:step("timeline", function()
      for i, m in ipairs(msgs) do
        local last = m.later and m.later[#m.later] or m
        ctx:note(("message %d: to %s from %s, message-id <%s>: %s"):format(i, tostring(m.to), tostring(m.from),
          tostring(m.message_id or found.message_id), tostring(last.final_status)))
        show_hops(m.hops)
        for _, l in ipairs(m.later or {}) do
          ctx:note("  later attempts of the same queue file:")
          show_hops(l.hops)
        end
        local w = { before_qmgr = 0, in_qmgr = 0, conn_setup = 0, transmission = 0 }
        for _, x in ipairs { m, table.unpack(m.later or {}) } do
          for k in pairs(w) do w[k] = math.max(w[k], (x.where or {})[k] or 0) end
        end
        local big, bigv = nil, -1
        for _, d in ipairs(DELAYS) do
          if w[d[1]] > bigv then big, bigv = d, w[d[1]] end
        end
        ctx:note(("  the time went: a=%s b=%s c=%s d=%s; %s"):format(secs(w.before_qmgr), secs(w.in_qmgr),
          secs(w.conn_setup), secs(w.transmission),
          bigv >= 0.01 and ("most of it %s (%s)"):format(big[3], big[2]) or "no hop took measurable time"))
        if last.delivered then
          delivered = delivered + 1
          ctx:note(("  delivered%s%s"):format(last.mailbox and (" into folder " .. last.mailbox) or "",
            last.duration and (" %s after it arrived"):format(secs((last.last_time or 0) - (m.first_time or last.first_time or 0))) or ""))
          if last.mailbox and last.mailbox ~= "INBOX" then
            -- saved, but not where the user looks first (a sieve fileinto, e.g. Junk)
            ctx:finding { severity = "info", cause = "delivered_to_folder", hop = host_names[(last.hops[#last.hops] or {}).host],
                          message = ("%s for %s was saved into folder %s, not INBOX"):format(needle, tostring(m.to), last.mailbox) }
          end
        else
          local st = last.stopped_at or {}
          local lh = last.hops[#last.hops] or {}
          stopped[#stopped + 1] = { m = last, s = st }
          ctx:note(("  stopped at %s (%s): %s"):format(host_of(st.host), tostring(st.queue_id or st.session), tostring(st.reason or st.status)))
          for _, n in ipairs(last.notifications or {}) do
            ctx:note(("  %s notification: queue id %s"):format(n.kind, tostring(n.id)))
          end
          ctx:finding { severity = (last.final_status == "bounced" or last.final_status == "rejected") and "fail" or "warn",
                        cause = "message_" .. tostring(last.final_status), hop = host_names[st.host] or st.host,
                        message = ("%s for %s stopped at %s %s: %s"):format(needle, tostring(m.to), host_of(st.host),
                          tostring(st.queue_id or st.session or ""), tostring(st.reason or st.status)),
                        evidence = { { host = host_names[st.host] or st.host, source = "log", text = (lh.lines or {})[#(lh.lines or {})] } } }
        end
      end
    end, "per-hop timeline: where the time went and where it stopped")

    if #stopped == 0 then
      ctx:verdict { status = "healthy", message = ("%s: delivered to %d recipient(s)"):format(needle, delivered) }
    else
      local s = stopped[1]
      ctx:verdict { status = "problem", cause = "message_" .. tostring(s.m.final_status), hop = host_names[s.s.host] or s.s.host,
                    message = ("%s: %d delivered, %d stopped (first: %s at %s)"):format(needle, delivered, #stopped,
                      tostring(s.m.to), host_of(s.s.host)) }
    end
  end,
}
