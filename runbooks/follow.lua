-- runbooks/follow.lua: watch both hosts' mail logs live for one address, like
-- `docker logs -f ... | grep ADDR` on each side at once, until --duration ends. Reads only.
local ops = require "lib.mailops"
local maillog = require "runbook.maillog"

local OVERLAP = 3   -- seconds each poll reads back, so a line written during a poll is not lost

return {
  description = "Follow both hosts' mail logs live for one address until --duration ends",
  kind = "report",
  help = [[
What it does: every second it reads the new lines of the MX's Postfix log, the mail server's
Postfix log and Dovecot's log (docker logs --since), and prints those that mention the address,
plus the later lines of the same queue file, LMTP session or Message-ID (so "removed" and the
next hop's lines show up too). Run it, then send a test message or ask the sender to resend,
and watch the mail travel. It ends by itself after --duration (and at the run's --deadline,
which must be longer).
What it changes: nothing.
Exit 0 (a report); the last line says how many lines matched.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the address to watch, e.g. info@example.jp" },
    { name = "duration", type = "duration", default = "60s", help = "how long to follow (e.g. 30s, 5m)" },
  },
  hosts = { "@mx", "@mailserver" },
  examples = {
    "runbook run follow --addr info@example.jp",
    "runbook run follow --addr info@example.jp --duration 5m --deadline 360",
  },

  run = function(ctx)
    local addr = ctx.args.addr:lower()
    local duration = ctx.args.duration
    local services = {}
    for _, spec in ipairs { ops.mx_postfix(ctx), ops.ms_postfix(ctx), ops.dovecot(ctx) } do
      if ops.service_of(ctx, spec) then services[#services + 1] = spec end
    end
    -- needles: the address, then every queue id / session / message-id seen with it
    local needles, needle_list = { [addr] = true }, { addr }
    local function learn(line)
      local r = maillog.parse(line)
      if not r then return end
      for _, k in ipairs { r.queue_id, r.session, r.message_id, r.queued_as } do
        if k and k ~= "NOQUEUE" and #k >= 6 then
          k = k:lower()
          if not needles[k] then needles[k] = true; needle_list[#needle_list + 1] = k end
        end
      end
    end
    local function mentions_addr(rec) return rec.line:lower():find(addr, 1, true) ~= nil end
    local function wanted(rec)
      local l = rec.line:lower()
      for _, n in ipairs(needle_list) do
        if l:find(n, 1, true) then return true end
      end
      return false
    end

    local matched, polls = 0, 0
    local seen = {}            -- "svc ts line" -> time, to drop lines read twice (the overlap)
    local t_start = ctx:elapsed()
    local from = ctx:time()    -- lines from the start of the run on (sub-second: not a line before it)
    ctx:note(("following %s in %s for %ds"):format(addr, table.concat(services, ", "), math.floor(duration)))
    ctx:step("follow", function()
      while ctx:elapsed() - t_start < duration do
        local now = ctx:time()
        local since = math.max(from, now - OVERLAP)
        for _, spec in ipairs(services) do
          local logs, msg = ctx:docker_logs(spec, { since = since })
          if logs then
            -- the window is a few seconds: keep it, learn the ids of the address's lines first,
            -- so the earlier lines of the same queue file (client=, message-id=) show in order
            local recs = {}
            for rec in logs do
              if (rec.time or now) >= from then   -- docker's bound is exact; this keeps it so
                recs[#recs + 1] = rec
                if mentions_addr(rec) then learn(ops.log_line(rec)) end
              end
            end
            for _, rec in ipairs(recs) do
              local key = spec .. " " .. tostring(rec.ts) .. " " .. rec.line
              if not seen[key] and wanted(rec) then
                seen[key] = rec.time or now
                matched = matched + 1
                ctx:note(("%s %s  %s"):format(spec, rec.time and os.date("!%H:%M:%S", math.floor(rec.time)) or "--:--:--", rec.line))
              end
            end
          else
            ctx:progress(("cannot read %s: %s"):format(spec, tostring(msg)))
          end
        end
        for k, t in pairs(seen) do
          if t < since - OVERLAP then seen[k] = nil end
        end
        polls = polls + 1
        local left = duration - (ctx:elapsed() - t_start)
        ctx:progress(("following %s: %ds left, %d line(s) so far"):format(addr, math.max(0, math.ceil(left)), matched))
        if left > 0 then ops.pause(ctx, math.min(1, left)) end
      end
    end, "poll the logs every second until --duration ends")

    ctx:verdict { status = "healthy",
                  message = ("followed %s for %ds (%d polls): %d line(s) matched"):format(addr, math.floor(duration), polls, matched) }
  end,
}
