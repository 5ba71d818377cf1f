-- runbooks/message-move.lua: issue 11's "Postfix logged 250 Saved, the message sits in Junk"
-- remedy: find the one message with a given Message-ID in the user's mailboxes (doveadm search /
-- fetch, reads) and move it to --to (default INBOX) with doveadm move.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local FIELDS = "mailbox uid guid hdr.message-id"
local EX_TEMPFAIL = 75        -- doveadm: a mailbox could not be opened

return {
  description = "Move one message, found by its Message-ID in a user's mailboxes, to INBOX (or --to) with doveadm move",
  kind = "remedy",
  help = [[
What it does: asks Dovecot for the messages of --addr whose Message-ID header contains
--message-id (`doveadm search` over every mailbox of the user, then `doveadm fetch` of their
mailbox, UID and Message-ID, keeping only the exact Message-ID). Exactly one message must
match: none, or several (a copy in two folders, a resent message), is refused and nothing is
changed (exit 1); the matches are listed. The message in --to already: nothing to do (exit 0).
--to must be an existing mailbox of the user (doveadm mailbox list).
What it changes: `doveadm move -u ADDR TO mailbox FROM uid UID` in the Dovecot container: that
one message, nothing else (the sieve rule or alias that put it there stays: fix it apart).
Without --apply it only prints `FROM/UID -> TO` and the command.
How to verify: after --apply it searches again and expects the one message in --to. A mail
client shows it in INBOX at its next refresh.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the mailbox owner, e.g. info@example.jp" },
    { name = "message-id", type = "string", required = true, pattern = "^<?[%w.!#%%&*+/=?^_{}~@-]+>?$",
      help = "the Message-ID, with or without <>, e.g. '<20240101.abc@example.jp>' (trace-message shows it)" },
    { name = "to", type = "string", pattern = "^%w[%w._/-]*$",
      help = "the destination mailbox (default INBOX)" },
  },
  needs = { services = { "@mailserver/dovecot" } },   -- its Dovecot container
  examples = {
    "runbook run message-move --addr info@example.jp --message-id '<20240101.abc@example.jp>'",
    "runbook run message-move --addr info@example.jp --message-id '<20240101.abc@example.jp>' --apply",
    "runbook run message-move --addr info@example.jp --message-id 20240101.abc@example.jp --to Archive --apply",
  },

  run = function(ctx)
    local addr = ctx.args.addr:lower()
    local to = ctx.args.to or "INBOX"
    local raw = ctx.args["message-id"]
    local bare = raw:gsub("^<", ""):gsub(">$", "")
    remedy.refuse_hostile(ctx, "message-id", bare)     -- the declared pattern already keeps them out
    local mid = "<" .. bare .. ">"
    local svc = ops.need_service(ctx, ops.dovecot(ctx))
    local host = ops.ms(ctx)

    -- doveadm(argv, what) -> stdout. A search or fetch over every mailbox ends with exit 75
    -- (EX_TEMPFAIL) when one of them cannot be opened (e.g. a file in the home that Maildir++
    -- takes for a folder): the others' answers still count, and the run says which one failed.
    local unreadable = {}
    local function doveadm(argv, what)
      local r, msg, code = ctx:service_exec(svc, argv)
      r = ops.must(r, msg, code, what .. " on " .. svc)
      local err = (r.stderr or ""):gsub("%s+$", "")
      if r.status == EX_TEMPFAIL and err ~= "" then
        for box in err:gmatch("Syncing mailbox ([^\n]-) failed") do
          if not unreadable[box] then
            unreadable[box] = true
            unreadable[#unreadable + 1] = box
            ctx:note(("%s: mailbox %s could not be read (%s); the other mailboxes were searched"):format(what, box,
              err:match("[^\n]*") or ""))
          end
        end
        if #unreadable > 0 then return r.stdout end
      end
      if r.status ~= 0 then
        error(("%s on %s: exit %s: %s"):format(what, svc, tostring(r.status), (err .. (r.stdout or "")):gsub("%s+$", "")), 0)
      end
      return r.stdout
    end
    local function unread_note()
      return #unreadable > 0 and (" (mailboxes that could not be read: %s)"):format(table.concat(unreadable, ", ")) or ""
    end

    -- matches() -> list of { mailbox, uid, guid } whose Message-ID is exactly mid. `doveadm
    -- search` says how many contain it (a substring match), `doveadm fetch` which they are.
    local function matches()
      local out = doveadm({ "doveadm", "search", "-u", addr, "header", "Message-ID", mid }, "doveadm search")
      local found = {}
      for _ in out:gmatch("[^\n]+") do found[#found + 1] = true end
      if #found == 0 then return {} end
      out = doveadm({ "doveadm", "-f", "tab", "fetch", "-u", addr, FIELDS, "header", "Message-ID", mid }, "doveadm fetch")
      local list, header = {}, true
      for line in out:gmatch("[^\n]+") do
        if header then header = false
        else
          local mbox, uid, guid, id = line:match("^(.-)\t(%d+)\t([^\t]*)\t(.-)%s*$")
          if mbox and id:lower() == mid:lower() then list[#list + 1] = { mailbox = mbox, uid = uid, guid = guid } end
        end
      end
      return list
    end
    local function where(m) return ("%s/uid %s"):format(m.mailbox, m.uid) end

    local state = ctx:step("check", function()
      local boxes = doveadm({ "doveadm", "mailbox", "list", "-u", addr }, "doveadm mailbox list")
      local has_to = false
      for b in boxes:gmatch("[^\n]+") do if b == to then has_to = true end end
      local list = matches()
      for _, m in ipairs(list) do ctx:note(("%s %s is in %s"):format(mid, m.guid, where(m))) end
      if #list == 0 then ctx:note(("no message of %s has Message-ID %s"):format(addr, mid)) end
      return { list = list, has_to = has_to, boxes = boxes }
    end, "find the message by its Message-ID in every mailbox of the user (doveadm search, fetch)")
    if not state then return end
    local list = state.list
    if not state.has_to then
      ctx:verdict { status = "problem", cause = "usage",
                    message = ("%s has no mailbox %s: nothing moved (its mailboxes: %s)"):format(addr, to,
                      (state.boxes:gsub("%s+$", ""):gsub("\n", ", "))) }
      return
    end
    if #list == 0 then
      ctx:verdict { status = "problem", cause = "message_not_found",
                    message = ("no message with Message-ID %s in any mailbox of %s: nothing moved (expunged, or delivered elsewhere: trace-message --message-id)%s"):format(mid, addr, unread_note()) }
      return
    end
    if #list > 1 then
      local ev = {}
      for i, m in ipairs(list) do ev[i] = { host = host, source = "doveadm fetch", text = where(m) } end
      ctx:verdict { status = "problem", cause = "several_messages", evidence = ev,
                    message = ("%d messages of %s have Message-ID %s (%s): refusing to choose; nothing moved"):format(#list, addr, mid,
                      table.concat((function() local w = {} for i, m in ipairs(list) do w[i] = where(m) end return w end)(), ", ")) }
      return
    end
    local m = list[1]
    local ev = { { host = host, source = "doveadm fetch", text = ("%s %s"):format(mid, where(m)) } }
    if m.mailbox == to then
      return remedy.nothing_to_do(ctx, ("%s is in %s of %s already: nothing to do%s"):format(mid, to, addr, unread_note()), ev)
    end

    return remedy.change(ctx, {
      step = "move", title = "doveadm move of that one message in the Dovecot container",
      finding = { severity = "warn", cause = m.mailbox == "Junk" and "delivered_to_junk" or "message_elsewhere", hop = svc, evidence = ev,
                  message = ("%s of %s is in %s, not %s"):format(mid, addr, m.mailbox, to) },
      change = ("%s: %s -> %s"):format(mid, where(m), to),
      write = function()
        local r, msg, code = ctx:service_exec(svc, { "doveadm", "move", "-u", addr, to, "mailbox", m.mailbox, "uid", m.uid })
        if r and r.status ~= 0 then r, msg, code = nil, ((r.stderr or "") .. (r.stdout or "")):gsub("%s+$", ""), "io" end
        return r, msg, code
      end,
      what = ("message %s of %s"):format(mid, addr),
      dry = { cause = m.mailbox == "Junk" and "delivered_to_junk" or "message_elsewhere",
              message = ("%s is in %s of %s"):format(mid, m.mailbox, addr) },
      verify_title = "search again: the one message in " .. to,
      verify = function()
        local now = matches()
        if #now ~= 1 or now[1].mailbox ~= to then
          local w = {}
          for i, x in ipairs(now) do w[i] = where(x) end
          return { fixed = false, hop = svc, message = ("%s is not (only) in %s after the move"):format(mid, to),
                   why = ("after the move %s is in: %s"):format(mid, #w > 0 and table.concat(w, ", ") or "no mailbox") }
        end
        return { fixed = true, message = ("%s moved: %s -> %s (uid %s)"):format(mid, where(m), to, now[1].uid),
                 evidence = { { host = host, source = "doveadm fetch", text = ("%s %s"):format(mid, where(now[1])) } } }
      end,
    })
  end,
}
