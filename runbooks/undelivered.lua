-- undelivered.lua: why does mail to one address not arrive?
--
-- The operators' procedure (メール不達時の調査, see README "undelivered"), as a runbook:
--   1. dell: does the user and its domain exist (and is the user enabled)?
--   2. ec2: does the MX receive mail (MX record, port 25, container running)?
--   3. ec2: does it relay to dell (relay_domains, relay_transport, the relay port)?
--   4. dell: does Postfix receive it (only when relay_transport goes through dell's Postfix)?
--   5. dell: does Dovecot deliver it (LMTP, Maildir owner and mode, disk space, quota)?
-- plus both queues, container states and the logs of every hop for the address.
--
-- Every check records findings with a cause code. At the end the verdict names the cause that
-- stops the mail FIRST along the path (CAUSES below is in path order), with its evidence and
-- the exact command of the fix runbook. Edit freely: add a check as a step, add a cause to
-- CAUSES with its hop and fix; `runbook check undelivered` validates the edit, no rebuild.

-- Causes in the order mail meets them. status: what the verdict says when this is the cause.
-- fix(f): the remedy as {runbook=, args=} (a runbook command line), or a sentence for humans.
local CAUSES = {
  { cause = "mx_missing",            hop = "dns",         fix = function(f) return ("publish an MX record for %s that points at the MX gateway (%s)"):format(f.domain, f.mx_addr_text) end },
  { cause = "mx_wrong",              hop = "dns",         fix = function(f) return ("correct the MX record of %s: it must point at the MX gateway (%s)"):format(f.domain, f.mx_addr_text) end },
  { cause = "mx_unreachable",        hop = "mx.smtp",     fix = function(f) return { runbook = "container-restart", args = { service = f.mx_pf } } end },
  { cause = "relay_domain_missing",  hop = "mx.postfix",  fix = function(f) return { runbook = "relay-domain-add", args = { domain = f.domain } } end },
  { cause = "relay_transport_wrong", hop = "mx.postfix",  fix = function(f) return { runbook = "relay-transport-set", args = { value = f.expected_transport } } end },
  { cause = "relay_unreachable",     hop = "mx->mailserver", fix = function(f) return ("restore the link from %s to %s port %s (tailnet / firewall), then: runbook run queue-flush --service %s"):format(f.mx, f.next_hop_host or "?", f.next_hop_port or "?", f.mx_pf) end },
  { cause = "mailserver_postfix_down", hop = "mailserver.postfix", fix = function(f) return { runbook = "container-restart", args = { service = f.ms_pf } } end },
  { cause = "dovecot_down",          hop = "mailserver.dovecot", fix = function(f) return { runbook = "container-restart", args = { service = f.ms_dc } } end },
  { cause = "db_down",               hop = "mailserver.db", fix = function(f) return { runbook = "container-restart", args = { service = f.ms_db } } end },
  { cause = "domain_missing",        hop = "mailserver.db", fix = function(f) return { runbook = "domain-create", args = { domain = f.domain } } end },
  { cause = "user_missing",          hop = "mailserver.db", fix = function(f) return { runbook = "user-create", args = { addr = f.addr } } end },
  { cause = "user_disabled",         hop = "mailserver.db", fix = function(f) return { runbook = "user-enable", args = { addr = f.addr } } end },
  { cause = "quota_exceeded",        hop = "mailserver.dovecot", fix = function(f) return ("the mailbox of %s is over quota: raise its quota in the User Management API or have the user clean up"):format(f.addr) end },
  { cause = "disk_full",             hop = "mailserver.disk", status = "escalate", fix = function(f) return ("free space on %s's mail volume (%s); less than 10%% left is an escalation"):format(f.ms, f.maildir_root) end },
  { cause = "maildir_permissions",   hop = "mailserver.maildir", fix = function(f) return { runbook = "maildir-fix", args = { domain = f.domain } } end },
  { cause = "queue_stuck",           hop = "mx.queue",    fix = function(f) return { runbook = "queue-flush", args = { service = f.queue_service or f.mx_pf, ["queue-id"] = f.stuck_queue_id } } end },
  { cause = "mx_host_unreachable",   hop = "mx.ssh",      status = "escalate", fix = function(f) return ("the MX gateway %s cannot be reached over SSH: check the host and the network (escalate if both hosts fail)"):format(f.mx) end },
  { cause = "db_error",              hop = "mailserver.db", status = "escalate", fix = function() return "the database answers with errors: possible corruption, escalate" end },
}
local RANK = {}
for i, c in ipairs(CAUSES) do RANK[c.cause] = i end

local function split_list(v)
  local out = {}
  if type(v) == "table" then
    for _, x in ipairs(v) do out[#out + 1] = tostring(x) end
    return out
  end
  for item in tostring(v or ""):gmatch("[^%s,]+") do out[#out + 1] = item end
  return out
end

local function contains(list, want)
  for _, x in ipairs(list) do if x:lower() == want:lower() then return true end end
  return false
end

-- relay_transport value -> kind, host, port ("lmtp:[127.0.0.20]:2525" -> "lmtp", "127.0.0.20", 2525)
local function parse_transport(v)
  v = tostring(v or "")
  local kind, rest = v:match("^%s*(%a+):(.*)$")
  if not kind then return nil end
  local host, port = rest:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = rest:match("^([^:]+):?(%d*)$") end
  port = tonumber(port) or (kind == "lmtp" and 24 or 25)
  return kind, host, port
end

local function norm_transport(v) return (tostring(v or ""):gsub("%s+", "")) end

local function ev(host, source, text, time)
  return { host = host, source = source, text = text, time = time }
end

-- A delivery reply (or reject reason) -> the cause it points at, refined by what is known now.
local function classify_reply(reply, causes)
  local r = tostring(reply or ""):lower()
  if r:find("relay access denied", 1, true) then return "relay_domain_missing" end
  if r:find("5%.2%.2") or r:find("quota", 1, true) or r:find("mailbox is full", 1, true) then return "quota_exceeded" end
  if r:find("user doesn't exist", 1, true) or r:find("5%.1%.1") or r:find("user unknown", 1, true) then
    return causes.user_disabled and "user_disabled" or causes.domain_missing and "domain_missing" or "user_missing"
  end
  if r:find("connection refused", 1, true) or r:find("timed out", 1, true) or r:find("no route", 1, true) then
    return causes.dovecot_down and "dovecot_down" or causes.mailserver_postfix_down and "mailserver_postfix_down" or "relay_unreachable"
  end
  if r:find("4%.2%.0") or r:find("4%.3%.0") or r:find("internal error", 1, true) or r:find("lookup failure", 1, true) then
    return causes.db_down and "db_down" or causes.disk_full and "disk_full" or "maildir_permissions"
  end
  return nil
end

-- Log lines name the host by its own hostname (Postfix's myhostname); evidence uses the
-- inventory's name, learned from the first line read from each host.
local host_alias = {}
local function inv_host(h) return host_alias[h] or h end

local function iso(t) return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or nil end

-- One evidence line per hop of a tracked message: where it was, what happened, how long.
local function path_evidence(msg)
  local out = {}
  for _, h in ipairs(msg.hops or {}) do
    local text
    if h.kind == "postfix" then
      text = ("%s from=<%s> to=<%s> %s%s%s"):format(h.queue_id or "?", h.from or "", h.to or "", h.status or "?",
        h.relay and (" relay=" .. h.relay) or "", h.reply and (" (" .. h.reply .. ")") or "")
    elseif h.kind == "dovecot" then
      text = ("lmtp session %s user %s: %s%s%s"):format(h.session or "?", h.user or h.to or "?", h.status or "?",
        h.mailbox and (" to " .. h.mailbox) or "", h.error and (": " .. h.error) or "")
    else
      text = ("%s %s %s %s"):format(h.status or "rejected", h.code or "", h.enhanced or "", h.reason or "")
    end
    out[#out + 1] = ev(inv_host(h.host), h.kind == "dovecot" and "dovecot log" or "postfix log", text, iso(h.time))
  end
  return out
end

-- Log lines of one tracked message hop, as evidence (the last few).
local function hop_evidence(hop, source, max)
  local out = {}
  local lines = hop.lines or {}
  for i = math.max(1, #lines - (max or 4) + 1), #lines do
    out[#out + 1] = ev(inv_host(hop.host), source, lines[i])
  end
  return out
end

return {
  description = "Why mail to one address does not arrive: walk both hops, find where it stops, name the fix",
  kind = "diagnosis",
  help = [[
Follows the operators' procedure across the MX gateway (inventory mail.mx_host, e.g. "ec2",
Postfix in a container, reached over SSH) and the mail server (mail.mailserver_host, e.g. "dell":
Postfix, Dovecot and MariaDB in a compose project):

  database   the domain and user rows (exists, enabled, maildir)          document 1.1
  dns        the domain's MX record and the MX's address                   document 4
  MX         its Postfix container, port 25, relay_domains/relay_transport document 2.3, 4
  relay      the next hop of relay_transport answers, seen FROM the MX     document 3
  logs       every hop's log for the address in the window (--since)       document 1.2, 1.3, 2.2
  queues     what waits in both Postfix queues for the address or domain   document Q1
  Dovecot    LMTP answers RCPT for the address; Maildir owner/mode; disk    document 1.3, 4

It reads ec2's relay_transport to learn the real path: lmtp:[dell]:2525 goes straight to Dovecot
(dell's Postfix is then not on the path), smtp:[dell]:25 goes through dell's Postfix.
The verdict is healthy, problem or escalate (disk under 10 % free, database errors, MX host
unreachable), with the hop where mail stops first, a cause code, the evidence (log lines and
values with host and time) and the exact fix command (a dry run until you add --apply).
Reads only: nothing is changed. --probe also asks the MX (RCPT only, no message) whether it
would accept mail for the address; with --apply --probe it sends a tagged test message and
follows it hop by hop until it is saved or stops.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the recipient whose mail does not arrive" },
    { name = "since", type = "duration", default = "1h", help = "how far back to read the logs" },
    { name = "probe", type = "boolean", help = "also probe the MX over SMTP (a test message only with --apply)" },
  },
  hosts = { "@mx", "@mailserver" },   -- mail.mx_host and mail.mailserver_host of the inventory
  examples = {
    "runbook run undelivered --addr info@example.jp",
    "runbook run undelivered --addr info@example.jp --since 6h --report /tmp/ticket.md",
    "runbook run undelivered --addr info@example.jp --format json | jq -c 'select(.event==\"verdict\")'",
  },

  run = function(ctx)
    local inv = ctx.inventory
    local addr = ctx.args.addr
    local domain = addr:match("@(.+)$")
    local mx = inv.mail.mx_host or "ec2"
    local ms = inv.mail.mailserver_host or "dell"
    local f = {   -- facts for the verdict and the fixes
      addr = addr, domain = domain, mx = mx, ms = ms,
      mx_pf = mx .. "/postfix", ms_pf = ms .. "/postfix", ms_dc = ms .. "/dovecot", ms_db = ms .. "/mariadb",
      db = inv.mail.database or "mail",
      expected_transport = inv.mail.relay_transport,
      maildir_owner = inv.mail.maildir_owner or "vmail",
    }
    local mxh, msh = inv.hosts[mx], inv.hosts[ms]
    if not mxh or not msh then
      error(("the inventory must name the MX host (mail.mx_host: %s) and the mail server (mail.mailserver_host: %s) under hosts"):format(mx, ms))
    end
    local has = function(host, svc) return inv.hosts[host] and inv.hosts[host].services and inv.hosts[host].services[svc] ~= nil end
    f.mx_addrs = inv.mail.mx_addresses or { mxh.address }
    f.mx_addr_text = table.concat(f.mx_addrs, ", ")
    local dc = has(ms, "dovecot") and inv.hosts[ms].services.dovecot or {}
    f.maildir_root = dc.maildir_root or "/var/mail/vmail"
    local since = os.time() - ctx.args.since
    local causes = {}          -- cause -> finding
    -- hops are written generically (mx.postfix, mailserver.db); show the inventory's names
    local function finding(fd)
      if fd.hop then fd.hop = fd.hop:gsub("^mx", mx):gsub("mailserver", ms) end
      return ctx:finding(fd)
    end
    local function found(fd)
      local fnd = finding(fd)
      if fd.cause and fd.severity ~= "info" and fd.severity ~= "warn" and not causes[fd.cause] then causes[fd.cause] = fnd end
      return fnd
    end

    -- 1.1 the database ------------------------------------------------------------------
    ctx:step("db", function()
      local d, msg, code = ctx:sql(f.db, "SELECT id, name FROM domains WHERE name = ?", domain)
      if not d then
        if code == "sql" then
          found { cause = "db_error", hop = "mailserver.db", message = "the user database answers with an error: " .. msg,
                  evidence = { ev(ms, "sql", msg) } }
        else
          f.db_down = msg
          found { cause = "db_down", hop = "mailserver.db",
                  message = ("the user database %s cannot be reached (%s): Dovecot cannot look up users"):format(f.db, code),
                  evidence = { ev(ms, "sql", msg) } }
        end
        return
      end
      if #d.rows == 0 then
        found { cause = "domain_missing", hop = "mailserver.db", message = ("the domain %s is not in the domains table"):format(domain),
                evidence = { ev(ms, "sql", ("SELECT id, name FROM domains WHERE name = '%s' -> 0 rows"):format(domain)) } }
      else
        f.domain_id = d.rows[1].id
      end
      local u = assert(ctx:sql(f.db, "SELECT email, domain_id, enabled, maildir FROM users WHERE email = ?", addr))
      local row = u.rows[1]
      if not row then
        found { cause = "user_missing", hop = "mailserver.db", message = ("the user %s is not in the users table"):format(addr),
                evidence = { ev(ms, "sql", ("SELECT ... FROM users WHERE email = '%s' -> 0 rows"):format(addr)) } }
        return
      end
      f.user_maildir = row.maildir
      if tonumber(row.enabled) ~= 1 then
        found { cause = "user_disabled", hop = "mailserver.db",
                message = ("the user %s exists but is disabled (enabled = %s): Dovecot answers 550 5.1.1 as for an unknown user"):format(addr, tostring(row.enabled)),
                evidence = { ev(ms, "sql", ("users: email=%s enabled=%s maildir=%s"):format(row.email, tostring(row.enabled), tostring(row.maildir))) } }
      end
      if f.domain_id and row.domain_id ~= f.domain_id then
        finding { severity = "warn", cause = "user_domain_mismatch", hop = "mailserver.db",
                      message = ("the user's domain_id %s is not the id %s of %s"):format(tostring(row.domain_id), tostring(f.domain_id), domain) }
      end
      local expect = ("%s/%s/"):format(domain, addr:match("^(.*)@"))
      if type(row.maildir) ~= "string" or row.maildir == "" then
        finding { severity = "warn", cause = "maildir_unset", hop = "mailserver.db", message = "the user's maildir column is empty" }
      elseif row.maildir ~= expect and row.maildir ~= expect:sub(1, -2) then
        finding { severity = "warn", cause = "maildir_unusual", hop = "mailserver.db",
                      message = ("the user's maildir is %s (usually %s)"):format(row.maildir, expect) }
      end
    end, "the domain and the user exist in the database (document 1.1)")

    -- 4 dns: the MX record -----------------------------------------------------------------
    ctx:step("dns", function()
      local r, msg, code = ctx:dig(domain, "MX")
      if not r or #r.answers == 0 then
        found { cause = "mx_missing", hop = "dns",
                message = ("%s has no MX record (%s): senders cannot find the MX gateway"):format(domain, code or "no data"),
                evidence = { ev("dns", "dig MX " .. domain, msg or "NOERROR, empty answer") } }
        return
      end
      local seen, matched = {}, false
      for _, a in ipairs(r.answers) do
        if a.exchange then
          local ips = ctx:dig_addresses(a.exchange) or {}
          for _, ip in ipairs(ips) do
            seen[#seen + 1] = ("%s %s -> %s"):format(a.preference, a.exchange, ip)
            if contains(f.mx_addrs, ip) then matched = true; f.mx_ip = ip end
          end
          if #ips == 0 then seen[#seen + 1] = ("%s %s -> (no address)"):format(a.preference, a.exchange) end
        end
      end
      if not matched then
        local evs = {}
        for _, s in ipairs(seen) do evs[#evs + 1] = ev("dns", "dig MX " .. domain, s) end
        found { cause = "mx_wrong", hop = "dns",
                message = ("the MX of %s does not point at the MX gateway (%s)"):format(domain, f.mx_addr_text), evidence = evs }
      end
    end, "the domain's MX record points at the MX gateway (document 4)")
    f.mx_ip = f.mx_ip or f.mx_addrs[1]

    -- 4 container states on both hosts ------------------------------------------------------
    local states = {}
    ctx:step("containers", function()
      for _, svc in ipairs { f.mx_pf, f.ms_pf, f.ms_dc, f.ms_db } do
        local host, name = svc:match("^(.-)/(.*)$")
        if has(host, name) then
          local st, msg, code = ctx:container_state(svc)
          states[svc] = st or { error = msg, code = code }
          if st and not st.running then
            finding { severity = "warn", cause = "container_stopped", hop = svc,
                          message = ("%s is not running (%s, exit code %s, finished %s)"):format(svc, tostring(st.status), tostring(st.exit_code), tostring(st.finished_at)),
                          evidence = { ev(host, "docker inspect " .. (st.name or name), ("status=%s exit_code=%s restarts=%s"):format(tostring(st.status), tostring(st.exit_code), tostring(st.restart_count))) } }
          elseif not st and host == mx and (code == "hostkey" or code == "auth" or code == "unreachable"
                                            or code == "timeout" or code == "refused") then
            f.mx_ssh = msg
          end
        end
      end
      if f.mx_ssh then
        found { cause = "mx_host_unreachable", hop = "mx.ssh", message = ("cannot reach %s over SSH: %s"):format(mx, f.mx_ssh),
                evidence = { ev(mx, "ssh", f.mx_ssh) } }
      end
    end, "the Postfix, Dovecot and MariaDB containers run (document 4)")
    local function down(svc) return states[svc] and states[svc].running == false end
    if f.db_down and down(f.ms_db) then
      causes.db_down.evidence[#causes.db_down.evidence + 1] = ev(ms, "docker inspect", f.ms_db .. " is not running")
    end

    -- 4 the MX accepts connections on port 25 -------------------------------------------------
    ctx:step("mx.smtp", function()
      if f.mx_ssh then ctx:skip("the MX host is unreachable") end
      local r, msg, code = ctx:tcp_check(ms, f.mx_ip, 25)
      if r then return end
      local evs = { ev(ms, "tcp " .. f.mx_ip .. ":25", msg) }
      if down(f.mx_pf) then evs[#evs + 1] = ev(mx, "docker inspect", f.mx_pf .. " is not running (" .. tostring(states[f.mx_pf].status) .. ")") end
      found { cause = "mx_unreachable", hop = "mx.smtp",
              message = ("the MX gateway %s does not accept connections on port 25 (%s)%s"):format(f.mx_ip, code,
                down(f.mx_pf) and ": its Postfix container is stopped" or ""),
              evidence = evs }
    end, "the MX answers on port 25 (document 4)")

    -- 2.3 the MX's relay configuration -------------------------------------------------------
    ctx:step("mx.config", function()
      if f.mx_ssh or down(f.mx_pf) then ctx:skip("the MX's Postfix is not reachable") end
      local p, msg = ctx:postconf(f.mx_pf, { "relay_domains", "relay_transport", "relayhost", "transport_maps" })
      if not p then error("postconf on " .. f.mx_pf .. ": " .. tostring(msg)) end
      local function val(name) local v = p[name]; if type(v) == "table" then v = v.value or table.concat(v, ", ") end; return v or "" end
      f.relay_domains = split_list(val("relay_domains"))
      f.relay_transport = val("relay_transport")
      if not contains(f.relay_domains, domain) then
        found { cause = "relay_domain_missing", hop = "mx.postfix",
                message = ("%s is not in relay_domains of %s: the MX refuses its mail with 554 Relay access denied"):format(domain, f.mx_pf),
                evidence = { ev(mx, "postconf relay_domains", "relay_domains = " .. val("relay_domains")) } }
      end
      local kind, host, port = parse_transport(f.relay_transport)
      local wrong
      if f.expected_transport then
        wrong = norm_transport(f.relay_transport) ~= norm_transport(f.expected_transport)
      else
        wrong = kind == nil or (kind ~= "lmtp" and kind ~= "smtp")
      end
      if wrong then
        found { cause = "relay_transport_wrong", hop = "mx.postfix",
                message = ("relay_transport of %s is %q%s"):format(f.mx_pf, f.relay_transport,
                  f.expected_transport and (", not " .. f.expected_transport) or ", not an lmtp: or smtp: next hop"),
                evidence = { ev(mx, "postconf relay_transport", "relay_transport = " .. f.relay_transport) } }
        kind, host, port = parse_transport(f.expected_transport)
      end
      f.path_kind, f.next_hop_host, f.next_hop_port = kind, host, port
      local via = kind == "smtp" and ("%s's Postfix (smtp:[%s]:%s), then Dovecot"):format(ms, host, port)
        or ("Dovecot LMTP directly (lmtp:[%s]:%s); %s's Postfix is not on the path"):format(tostring(host), tostring(port), ms)
      ctx:note(("path: sender -> %s Postfix -> %s"):format(mx, via))
      if val("relayhost") ~= "" then ctx:note("relayhost = " .. val("relayhost") .. " (not needed when relay_transport is set)") end
    end, "relay_domains and relay_transport on the MX (document 2.3)")

    -- 3 the relay hop, seen from the MX -----------------------------------------------------------
    ctx:step("relay", function()
      if not f.next_hop_host then ctx:skip("no usable relay_transport") end
      if f.mx_ssh then ctx:skip("the MX host is unreachable") end
      local r, msg, code = ctx:tcp_check(mx, f.next_hop_host, f.next_hop_port)
      if r then return end
      if code ~= "refused" and code ~= "timeout" and code ~= "unreachable" then
        -- the check itself could not run (e.g. the sshd forbids forwarding): no evidence either way
        finding { severity = "warn", cause = "relay_check_failed", hop = "mx->mailserver",
                  message = ("cannot test %s:%s from %s: %s"):format(f.next_hop_host, f.next_hop_port, mx, msg) }
        return
      end
      local target = f.path_kind == "smtp" and f.ms_pf or f.ms_dc
      local evs = { ev(mx, ("tcp %s:%s"):format(f.next_hop_host, f.next_hop_port), msg) }
      if down(target) then
        evs[#evs + 1] = ev(ms, "docker inspect", target .. " is not running (" .. tostring(states[target].status) .. ")")
        found { cause = f.path_kind == "smtp" and "mailserver_postfix_down" or "dovecot_down",
                hop = f.path_kind == "smtp" and "mailserver.postfix" or "mailserver.dovecot",
                message = ("%s is stopped, so the relay port %s:%s refuses connections from %s"):format(target, f.next_hop_host, f.next_hop_port, mx),
                evidence = evs }
      else
        found { cause = "relay_unreachable", hop = "mx->mailserver",
                message = ("%s cannot connect to the next hop %s:%s (%s) although %s is running"):format(mx, f.next_hop_host, f.next_hop_port, code, target),
                evidence = evs }
      end
    end, "the MX can connect to the next hop (document 3.1/3.2)")

    -- Dovecot's own state when it is not on the relay hop's verdict already
    if down(f.ms_dc) and not causes.dovecot_down then
      found { cause = "dovecot_down", hop = "mailserver.dovecot", message = f.ms_dc .. " is not running: nothing can be delivered",
              evidence = { ev(ms, "docker inspect", f.ms_dc .. " status=" .. tostring(states[f.ms_dc].status)) } }
    end

    -- 2.2 / 1.2 / 1.3 every hop's log for the address ------------------------------------------
    local maillog = require "runbook.maillog"
    local tracker = maillog.tracker { addr = addr, since = since }
    local read_from = {}
    local function read_logs(svc, label)
      local host = svc:match("^(.-)/")
      if not has(host, svc:match("/(.*)$")) then return end
      -- The whole window goes to the tracker, which filters in C: lines that carry only the
      -- queue id (message-id=, from=, removed) are kept with the message they belong to.
      local logs, msg, code = ctx:docker_logs(svc, { since = since })
      if not logs then
        finding { severity = "warn", cause = "logs_unavailable", hop = svc, message = ("cannot read %s's log: %s"):format(svc, msg) }
        return
      end
      local n = 0
      for rec in logs do
        if n == 0 then
          local p = maillog.parse(rec.line)
          if p and p.host then host_alias[p.host] = host end
        end
        tracker:feed_line(rec.ts and (rec.ts .. " " .. rec.line) or rec.line, { host = host, source = label })
        n = n + 1
      end
      read_from[#read_from + 1] = ("%s: %d line(s)"):format(svc, n)
    end
    ctx:step("logs", function()
      if not f.mx_ssh then read_logs(f.mx_pf, "mx-postfix") end
      if f.path_kind == "smtp" or f.path_kind == nil then read_logs(f.ms_pf, "ms-postfix") end
      read_logs(f.ms_dc, "dovecot")
      local msgs = tracker:messages()
      f.messages = msgs
      ctx:note(("%d message(s) for %s since %s (%s)"):format(#msgs, addr, os.date("!%Y-%m-%dT%H:%M:%SZ", since), table.concat(read_from, ", ")))
      if #msgs == 0 then
        finding { severity = "warn", cause = "no_mail_seen", hop = "mx.smtp",
                      message = ("no mail for %s reached %s in the last %ds: if a sender is waiting, the MX record, port 25 and the inbound network are the suspects"):format(addr, mx, ctx.args.since) }
        return
      end
      local last = msgs[#msgs]
      f.last_message = last
      local stop = last.stopped_at
      local reply = ""
      for _, hop in ipairs(last.hops) do
        if hop.reply and (hop.status == "deferred" or hop.status == "bounced" or hop.status == "rejected" or hop.kind == "reject") then reply = hop.reply or hop.reason or "" end
        if hop.kind == "reject" then reply = (hop.code or "") .. " " .. (hop.enhanced or "") .. " " .. (hop.reason or "") end
      end
      local evs = {}
      for _, hop in ipairs(last.hops) do
        for _, e in ipairs(hop_evidence(hop, hop.kind == "dovecot" and "dovecot log" or "postfix log", 3)) do evs[#evs + 1] = e end
      end
      if last.delivered then
        ctx:note(("the last message for %s was delivered (%s)"):format(addr, last.final_status))
        return
      end
      -- What the reply means is decided after the checks of the current state (below).
      f.log_reply, f.log_status, f.log_evidence, f.log_stop = reply, last.final_status, evs, stop
      finding { severity = "warn", cause = "not_delivered", hop = stop and stop.host or "logs",
                message = ("the last message for %s was %s%s"):format(addr, last.final_status, reply ~= "" and (": " .. reply) or ""),
                evidence = evs }
    end, "the address in every hop's log since --since (document 1.2, 1.3, 2.2)")

    -- Q1 both queues ------------------------------------------------------------------------------
    ctx:step("queues", function()
      for _, svc in ipairs { f.mx_pf, f.ms_pf } do
        local host = svc:match("^(.-)/")
        if has(host, "postfix") and not down(svc) and not (host == mx and f.mx_ssh) then
          local q, msg = ctx:postqueue(svc)
          if not q then
            finding { severity = "warn", cause = "queue_unreadable", hop = svc, message = ("cannot read the queue of %s: %s"):format(svc, msg) }
          else
            for _, m in ipairs(q) do
              for _, rc in ipairs(m.recipients or {}) do
                local a = tostring(rc.address or ""):lower()
                if a == addr:lower() or a:match("@(.+)$") == domain then
                  local age = os.time() - (tonumber(m.arrival_time) or os.time())
                  f.queued = f.queued or {}
                  f.queued[#f.queued + 1] = { service = svc, queue_id = m.queue_id, address = a, age = age, reason = rc.delay_reason, queue = m.queue_name }
                end
              end
            end
          end
        end
      end
      for _, q in ipairs(f.queued or {}) do
        finding { severity = "warn", cause = "queued", hop = q.service,
                      message = ("%s waits in the %s queue of %s for %ds (%s)"):format(q.queue_id, q.queue or "?", q.service, q.age, q.reason or "no reason given"),
                      evidence = { ev(q.service:match("^(.-)/"), "postqueue -j", ("%s %s %s: %s"):format(q.queue_id, q.queue or "", q.address, q.reason or "")) } }
      end
    end, "what waits in both Postfix queues (document Q1)")

    -- 1.3 / 4 Dovecot: the recipient, the Maildir, the disk -----------------------------------------
    ctx:step("dovecot", function()
      if not has(ms, "dovecot") then ctx:skip("no dovecot service in the inventory") end
      if down(f.ms_dc) then ctx:skip(f.ms_dc .. " is not running") end
      -- LMTP RCPT, as the MX would ask it (nothing is delivered: the dialogue stops after RCPT)
      if f.path_kind == "lmtp" and f.next_hop_host and not causes.db_down then
        local r, msg, code = ctx:smtp_probe { host = f.next_hop_host, port = f.next_hop_port, lmtp = true,
                                              from = "", rcpt = addr, stop = "rcpt", timeout = 15 }
        local rc = r and r.stages and r.stages.rcpt and r.stages.rcpt[1]
        if rc and not rc.ok then
          local text = ("%s %s %s"):format(rc.code or "", rc.enhanced or "", rc.text or "")
          local c
          if tostring(rc.code) == "552" or text:find("5%.2%.2") then c = "quota_exceeded"
          elseif tostring(rc.code):sub(1, 1) == "4" then c = causes.db_down and "db_down" or "maildir_permissions"
          elseif tostring(rc.code) == "550" then c = causes.user_disabled and "user_disabled" or causes.domain_missing and "domain_missing" or "user_missing" end
          local e = ev(ms, ("LMTP RCPT %s:%s"):format(f.next_hop_host, f.next_hop_port), text)
          if c and not causes[c] then
            found { cause = c, hop = c == "quota_exceeded" and "mailserver.dovecot" or (c == "maildir_permissions" and "mailserver.maildir" or "mailserver.db"),
                    message = ("Dovecot refuses RCPT for %s: %s"):format(addr, text), evidence = { e } }
          elseif c then
            table.insert(causes[c].evidence, e)
          else
            finding { severity = "warn", cause = "lmtp_refused", hop = "mailserver.dovecot", message = "Dovecot refuses RCPT: " .. text, evidence = { e } }
          end
        elseif not r and code ~= "dryrun" then
          ctx:note(("LMTP probe to %s:%s failed: %s"):format(f.next_hop_host, f.next_hop_port, msg))
        end
      end
      -- disk space of the mail volume
      local df = ctx:df(f.ms_dc, f.maildir_root)
      if df then
        local limit = inv.mail.disk_escalate_pct or 90
        if df.use_pct >= limit then
          found { cause = "disk_full", hop = "mailserver.disk",
                  message = ("the mail volume %s is %d%% full (%d KiB free): less than %d%% left"):format(f.maildir_root, df.use_pct, df.avail_kb, 100 - limit),
                  evidence = { ev(ms, "df " .. f.maildir_root, ("%s %d%% used, %d KiB available"):format(df.mount or df.filesystem or "", df.use_pct, df.avail_kb)) } }
        end
      end
      -- owner and mode of the domain's and the user's Maildir
      local paths = { f.maildir_root .. "/" .. domain }
      if f.user_maildir and f.user_maildir ~= "" then paths[#paths + 1] = f.maildir_root .. "/" .. f.user_maildir:gsub("/$", "") end
      for _, p in ipairs(paths) do
        local st, msg, code = ctx:stat(f.ms_dc, p)
        if st then
          local mode = tonumber(st.mode, 8) or tonumber(st.perms or "", 8) or 0
          local owner = st.user or st.owner
          if owner ~= f.maildir_owner or (mode // 64) & 7 ~= 7 then
            found { cause = "maildir_permissions", hop = "mailserver.maildir",
                    message = ("%s is owned by %s:%s mode %s; Dovecot (as %s) needs it owned and rwx"):format(p, tostring(owner), tostring(st.group), tostring(st.mode or st.perms), f.maildir_owner),
                    evidence = { ev(ms, "stat " .. p, ("%s:%s %s %s"):format(tostring(owner), tostring(st.group), tostring(st.mode or st.perms), tostring(st.type))) } }
            break
          end
        elseif code ~= "notfound" then
          ctx:note(("cannot stat %s: %s"):format(p, msg))
        end
      end
    end, "Dovecot accepts the recipient; Maildir owner and mode; free space (document 1.3, 4)")

    -- What the logs say, weighed against the current state -----------------------------------------
    -- A reply in the logs names a candidate cause. It is the verdict's cause only when a check of
    -- the current state confirms it; otherwise it is history (the fault is gone) and the queue
    -- decides whether anything still waits. Quota is the exception: an over-quota mailbox leaves
    -- evidence only on the MX side (Dovecot logs nothing), so the last reply is believed.
    if f.log_reply then
      local c = classify_reply(f.log_reply, causes)
      if c and causes[c] then
        for _, e in ipairs(f.log_evidence) do table.insert(causes[c].evidence, e) end
      elseif c == "quota_exceeded" then
        found { cause = "quota_exceeded", hop = "mailserver.dovecot",
                message = ("the mailbox of %s is over quota: the last message was %s with %q"):format(addr, f.log_status, f.log_reply),
                evidence = f.log_evidence }
      elseif c then
        finding { severity = "warn", cause = "past_failure", hop = "logs",
                  message = ("the last message failed as for %s (%s), but that is not the case now"):format(c, f.log_reply) }
      end
    end
    -- Mail waiting although nothing on the path is broken now: the queue is stuck.
    if f.queued and #f.queued > 0 then
      local blocking = false
      for c in pairs(causes) do if c ~= "queue_stuck" then blocking = true end end
      if not blocking then
        local q = f.queued[1]
        f.queue_service, f.stuck_queue_id = q.service, q.queue_id
        found { cause = "queue_stuck", hop = q.service:match("^(.-)/") == mx and "mx.queue" or "mailserver.queue",
                message = ("%d message(s) for %s wait in %s although the path works now: they are retried only at the next queue run"):format(#f.queued, addr, q.service),
                evidence = { ev(q.service:match("^(.-)/"), "postqueue -j", ("%s waiting %ds: %s"):format(q.queue_id, q.age, q.reason or "")) } }
      end
    end

    -- --probe: ask the MX (RCPT only), or with --apply send a tagged message and follow it --------
    if ctx.args.probe then
      ctx:step("probe", function()
        local stop = ctx.apply and "data" or "rcpt"
        local r, msg, code = ctx:smtp_probe { host = f.mx_ip, port = 25, from = "postmaster@" .. domain, rcpt = addr,
                                              stop = stop, subject = "runbook probe " .. ctx.run_id, timeout = 20 }
        if not r then ctx:note("probe: " .. tostring(msg)); return end
        local rc = r.stages and r.stages.rcpt and r.stages.rcpt[1]
        if rc and not rc.ok then
          finding { severity = "warn", cause = "probe_refused", hop = "mx.smtp",
                        message = ("the MX refuses RCPT for %s: %s %s %s"):format(addr, rc.code or "", rc.enhanced or "", rc.text or ""),
                        evidence = { ev(ms, "SMTP RCPT " .. f.mx_ip .. ":25", ("%s %s"):format(rc.code or "", rc.text or "")) } }
          return
        end
        if stop ~= "data" or not r.queued_as then ctx:note("probe: the MX accepts RCPT for " .. addr); return end
        ctx:note(("probe message %s queued on %s as %s; following it"):format(r.message_id or "?", mx, r.queued_as))
        local deadline = ctx:elapsed() + 30
        local saved = false
        while ctx:elapsed() < deadline and not saved do
          local t = maillog.tracker { addr = addr, since = os.time() - 120 }
          for _, svc in ipairs { f.mx_pf, f.ms_pf, f.ms_dc } do
            local host = svc:match("^(.-)/")
            if has(host, svc:match("/(.*)$")) then
              local logs = ctx:docker_logs(svc, { since = "3m", grep = { addr, r.queued_as } })
              for rec in logs or function() end do t:feed_line(rec.ts .. " " .. rec.line, { host = host }) end
            end
          end
          for _, m in ipairs(t:messages()) do
            if m.message_id and r.message_id and m.message_id:find(r.message_id:gsub("[<>]", ""), 1, true) then
              ctx:progress(("probe: %s"):format(m.final_status))
              if m.delivered then saved = true; ctx:note("probe: saved in the mailbox") end
            end
          end
        end
        if not saved then
          finding { severity = "fail", cause = "probe_not_delivered", hop = "probe",
                        message = "the probe message was not saved within 30 s" }
        end
      end, "probe the MX over SMTP (document 2.4)")
    end

    -- The verdict: the first cause along the path -----------------------------------------------------
    local first
    for c in pairs(causes) do
      if RANK[c] and (not first or RANK[c] < RANK[first]) then first = c end
    end
    if not first then
      local last = f.last_message
      local msg
      if last and last.delivered then
        msg = ("mail for %s is delivered: the last message (%s) was saved %s after it reached %s"):format(addr,
          last.message_id or "?", last.duration and ("%.2fs"):format(last.duration) or "", mx)
      else
        msg = ("nothing on the path to %s is broken now%s"):format(addr, last and "" or " (and no mail for it in the window)")
      end
      ctx:verdict { status = "healthy", message = msg, evidence = last and path_evidence(last) or nil }
      return
    end
    local spec = CAUSES[RANK[first]]
    local fnd = causes[first]
    local fix = spec.fix(f)
    local others = {}
    for c in pairs(causes) do if c ~= first then others[#others + 1] = c end end
    table.sort(others, function(a, b) return (RANK[a] or 99) < (RANK[b] or 99) end)
    ctx:verdict {
      status = spec.status or "problem",
      hop = fnd.hop or (spec.hop:gsub("^mx", mx):gsub("mailserver", ms)),
      cause = first,
      message = fnd.message .. (#others > 0 and (" (also found: " .. table.concat(others, ", ") .. ")") or ""),
      evidence = fnd.evidence,
      fix = fix,
    }
  end,
}
