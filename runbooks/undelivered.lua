-- undelivered.lua: why does mail to one address not arrive?
--
-- The operators' procedure (メール不達時の調査, see README "undelivered"), as data:
--   CHECKS (below)       every check in path order: name, hop, what it needs, the causes it can
--                        confirm, and its function. Each ends ok, fail (cause, evidence) or
--                        unknown (it could not ask: timeout, refusal where an answer was expected,
--                        permission, a daemon not answering). Unknown is never read as "no".
--   lib/causes.lua       the cause table: rank along the path, hop, status, fix
--   lib/replies.lua      what servers answer -> cause codes (an editable table)
--   lib/verdict.lua      one pure function: check results + every hop's log + queues -> verdict
-- By default the checks that can reproduce a failure now without sending mail run: banner and
-- EHLO at every MX, RCPT at the MX from outside mynetworks (mail.probe_from/probe_source), RCPT
-- at the next hop relay_transport really names. --no-probe turns them off.
-- Edit freely; `runbook check undelivered` refuses a check or reply naming an unknown cause.
local causes = require "lib.causes"
local replies = require "lib.replies"
local verdict = require "lib.verdict"
local maillog = require "runbook.maillog"
local chain = require "lib.chain"
local resolve = require "lib.resolve"

-- per-call timeouts (seconds): each stalled daemon costs at most this, and a daemon found
-- stalled is not asked again in the same run (f.dead), so a run ends within 20 s.
local T = { dns = 2, connect = 3, reply = 4, exec = 6, sql = 4 }

-- ---------------------------------------------------------------- small helpers

local function split_list(v)
  local out = {}
  if type(v) == "table" then for _, x in ipairs(v) do out[#out + 1] = tostring(x) end return out end
  for item in tostring(v or ""):gmatch("[^%s,]+") do out[#out + 1] = item end
  return out
end

local function contains(list, want)
  for _, x in ipairs(list) do if x:lower() == tostring(want):lower() then return true end end
  return false
end

-- "lmtp:[127.0.0.20]:2525" -> {kind="lmtp", host="127.0.0.20", port=2525, text=...}
local function parse_transport(v)
  v = tostring(v or "")
  local kind, rest = v:match("^%s*(%a+):(.*)$")
  if not kind then return nil end
  local host, port = rest:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = rest:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  port = tonumber(port) or (kind == "lmtp" and 24 or 25)
  return { kind = kind, host = host, port = math.tointeger(port), text = ("%s:%s"):format(host, port) }
end

local function norm(v) return (tostring(v or ""):gsub("%s+", "")) end
local function ev(host, source, text, time) return { host = host, source = source, text = text, time = time } end
local function iso(t) return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or nil end
local function reply_text(st) return st and ("%s %s %s"):format(st.code or "", st.enhanced or "", st.text or ""):gsub("%s+", " ") or "" end

-- ---------------------------------------------------------------- a check's result

local Result = {}
Result.__index = Result

-- fail(cause, message, evidence [, hop]): the cause must be one the check declares it confirms
function Result:fail(cause, message, evidence, hop)
  if not self.allowed[cause] then
    error(("check %s reports cause '%s', which it does not declare in confirms"):format(self.name, tostring(cause)), 2)
  end
  self.fails[#self.fails + 1] = { cause = cause, message = message, evidence = evidence or {}, hop = hop }
end

-- reply(text, at, message, evidence): a refusal classified by lib/replies.lua (candidates the
-- verdict resolves against the other checks); a reply no row knows is an unexplained failure
function Result:reply(text, at, message, evidence, hop)
  local row = replies.classify(text, at)
  self.fails[#self.fails + 1] = { candidates = row and row.causes or { "unexplained_failure" },
    message = message, evidence = evidence or {}, hop = hop }
end

-- unknown(why [, hop]): the check could not ask; hop names where (default: the check's hop)
function Result:unknown(why, hop)
  self.whys[#self.whys + 1] = why
  self.unknown_hop = self.unknown_hop or hop
end
function Result:skip(why) self.skipped = why end

-- gone(f, key, why, code): a timeout or a dead socket means this daemon does not answer: every
-- later call to it would wait just as long, so the run stops asking it.
local function gone(f, key, why, code)
  if code == "timeout" or code == "refused" or code == "unreachable" then f.dead[key] = why end
end

-- ---------------------------------------------------------------- the checks

local function check_db(ctx, f, r)
  local d, msg, code = ctx:sql(f.db, "SELECT id, name FROM domains WHERE name = ?", f.domain)
  if not d then
    if code == "sql" then
      return r:fail("db_error", "the user database answers with an error: " .. msg, { ev(f.ms, "sql", msg) })
    elseif code == "refused" or code == "unreachable" then
      f.dead.sql = msg
      return r:fail("db_down", ("the user database %s refuses connections (%s): Dovecot cannot look up users"):format(f.db, code),
        { ev(f.ms, "sql", msg) })
    end
    gone(f, "sql", msg, code)
    return r:unknown(("the database %s did not answer (%s: %s)"):format(f.db, code, msg))
  end
  if #d.rows == 0 then
    f.domain_row_missing = true
    r:fail("domain_missing", ("the domain %s is not in the domains table"):format(f.domain),
      { ev(f.ms, "sql", ("SELECT id, name FROM domains WHERE name = '%s' -> 0 rows"):format(f.domain)) })
  end
  -- the row as Dovecot should find it: the address itself, else its +tag-stripped form, else a
  -- row that differs only in case or trailing blanks (found here, judged by the dovecot check)
  local u, umsg, ucode = ctx:sql(f.db, "SELECT email, domain_id, enabled, maildir FROM users WHERE LOWER(TRIM(email)) IN (LOWER(?), LOWER(?))",
    f.addr, f.tag_base or f.addr)
  if not u then return r:unknown(("users query: %s (%s)"):format(umsg, ucode)) end
  local row
  for _, want in ipairs { f.addr, f.tag_base or f.addr } do
    for _, x in ipairs(u.rows) do if not row and x.email == want then row = x end end
  end
  row = row or u.rows[1]
  if not row then
    return r:fail("user_missing", ("the user %s is not in the users table"):format(f.addr),
      { ev(f.ms, "sql", ("SELECT ... FROM users WHERE email = '%s' -> 0 rows"):format(f.addr)) })
  end
  f.row = { email = row.email, enabled = row.enabled, maildir = row.maildir }
  if row.email ~= f.addr and row.email ~= f.tag_base then
    ctx:finding { severity = "warn", hop = f.ms .. ".db", message = ("the users row for %s is %q (case or blanks differ)"):format(f.addr, row.email),
                  evidence = { ev(f.ms, "sql", ("users: email=%q"):format(row.email)) } }
  end
  f.user_maildir = row.maildir
  if tonumber(row.enabled) ~= 1 then
    r:fail("user_disabled", ("the user %s exists but is disabled (enabled = %s): Dovecot answers 550 5.1.1 as for an unknown user"):format(f.addr, tostring(row.enabled)),
      { ev(f.ms, "sql", ("users: email=%s enabled=%s maildir=%s"):format(row.email, tostring(row.enabled), tostring(row.maildir))) })
  end
end

local function check_dns(ctx, f, r)
  local res, msg, code = ctx:dig(f.domain, "MX", { timeout = T.dns, retries = 0 })
  if not res and code ~= "nxdomain" then
    f.dead.dns = msg
    return r:unknown(("the DNS server did not answer the MX query (%s: %s): the MX record is not known, not missing"):format(code, msg))
  end
  if not res or #res.answers == 0 then
    return r:fail("mx_missing", ("%s has no MX record (%s): senders cannot find the MX gateway"):format(f.domain, code or "NOERROR, no data"),
      { ev("dns", "dig MX " .. f.domain, msg or "NOERROR, empty answer") })
  end
  local seen, stray = {}, {}
  for _, a in ipairs(res.answers) do
    if a.exchange then
      local ips, amsg, acode = ctx:dig_addresses(a.exchange, { timeout = T.dns, retries = 0 })
      -- only a real answer (no such name, no address) says the MX points nowhere; a timeout,
      -- SERVFAIL or refusal says nothing about it
      if not ips and acode ~= "nxdomain" and acode ~= "nodata" then
        if acode == "timeout" then f.dead.dns = f.dead.dns or amsg end
        return r:unknown(("the DNS server did not answer the address query for %s (%s: %s)"):format(a.exchange, tostring(acode), tostring(amsg)))
      end
      local known = false
      for _, ip in ipairs(ips or {}) do
        seen[#seen + 1] = ev("dns", "dig MX " .. f.domain, ("%s %s -> %s"):format(a.preference, a.exchange, ip))
        if contains(f.mx_addrs, ip) then known = true; if not contains(f.mx_ips, ip) then f.mx_ips[#f.mx_ips + 1] = ip end end
      end
      if not ips then seen[#seen + 1] = ev("dns", "dig A " .. a.exchange, amsg or "no address") end
      if not known then stray[#stray + 1] = ("%s %s"):format(a.preference, a.exchange) end
    end
  end
  if #f.mx_ips == 0 then
    return r:fail("mx_wrong", ("the MX of %s does not point at the MX gateway (%s)"):format(f.domain, f.mx_addr_text), seen)
  end
  if #stray > 0 then
    ctx:finding { severity = "warn", hop = "dns", message = ("MX record(s) of %s point at no host in the inventory: %s"):format(f.domain, table.concat(stray, ", ")), evidence = seen }
  end
end

local function check_mx_ssh(ctx, f, r)
  if ctx.inventory.hosts[f.mx].transport ~= "ssh" then return r:skip(f.mx .. " is reached locally") end
  local res, msg, code = ctx:stat(f.mx, "/")   -- a read over the host's SSH session
  if res then return end
  f.dead["ssh:mx"] = msg
  if code == "timeout" and not msg:find("connect", 1, true) then
    return r:unknown(("%s accepts SSH but the command did not finish (%s)"):format(f.mx, msg))
  end
  r:fail("mx_host_unreachable", ("cannot reach %s over SSH (%s): %s"):format(f.mx, code, msg), { ev(f.mx, "ssh", msg) })
end

local SERVICES = { { "mx_pf", "docker:mx" }, { "ms_pf", "docker:ms" }, { "ms_dc", "docker:ms" }, { "ms_db", "docker:ms" } }

local function check_containers(ctx, f, r)
  for _, s in ipairs(SERVICES) do
    local svc, key = f[s[1]], s[2]
    local host, name = svc:match("^(.-)/(.*)$")
    if f.has(host, name) then
      if f.dead[key] or (key == "docker:mx" and f.dead["ssh:mx"]) then
        r:unknown(("%s: not asked, %s's docker did not answer"):format(svc, host), host .. ".docker")
      else
        local st, msg, code = ctx:container_state(svc)
        if st then
          f.states[svc] = st
        elseif code == "notfound" then
          f.states[svc] = { running = false, status = "missing" }
        else
          gone(f, key, msg, code)
          r:unknown(("%s: %s (%s)"):format(svc, msg, code), host .. ".docker")
        end
      end
    end
  end
  if f.down(f.ms_dc) then
    r:fail("dovecot_down", f.ms_dc .. " is not running: nothing can be delivered",
      { ev(f.ms, "docker inspect", f.ms_dc .. " status=" .. tostring(f.states[f.ms_dc].status)) })
  end
  if f.down(f.ms_db) then
    r:fail("db_down", f.ms_db .. " is not running: Dovecot cannot look up users",
      { ev(f.ms, "docker inspect", f.ms_db .. " status=" .. tostring(f.states[f.ms_db].status)) })
  end
end

-- banner and EHLO at every MX address the domain publishes (or the inventory's, DNS unknown)
local function check_mx_smtp(ctx, f, r)
  local ips = #f.mx_ips > 0 and f.mx_ips or f.mx_addrs
  for _, ip in ipairs(ips) do
    local res, msg, code = ctx:smtp_probe { host = ip, port = 25, stop = "helo", helo = "runbook.test",
      bind = f.probe_source, timeout = T.reply }
    local e = { ev(f.ms, ("SMTP %s:25"):format(ip), msg or "") }
    if f.down(f.mx_pf) then e[#e + 1] = ev(f.mx, "docker inspect", f.mx_pf .. " is not running (" .. tostring(f.states[f.mx_pf].status) .. ")") end
    if res and res.stages and res.stages.greeting and tostring(res.stages.greeting.code):sub(1, 1) ~= "2" then
      r:reply(reply_text(res.stages.greeting), "mx", ("the MX %s greets with a refusal: %s"):format(ip, reply_text(res.stages.greeting)), e, "mx.smtp")
    elseif not res and code == "timeout" and tostring(msg):find("no reply", 1, true) then
      r:fail("mx_not_greeting", ("the MX %s accepts TCP on port 25 but sends no greeting within %ds"):format(ip, T.reply), e)
    elseif not res and (code == "refused" or code == "timeout" or code == "unreachable") then
      r:fail("mx_unreachable", ("the MX gateway %s does not accept connections on port 25 (%s)%s"):format(ip, code,
        f.down(f.mx_pf) and ": its Postfix container is stopped" or ""), e)
    elseif not res then
      r:unknown(("SMTP %s:25: %s (%s)"):format(ip, msg, code))
    else
      f.mx_ok_ip = f.mx_ok_ip or ip
    end
  end
end

local function check_mx_config(ctx, f, r)
  if f.down(f.mx_pf) then return r:skip(f.mx_pf .. " is not running") end
  local p, msg, code = chain.params(ctx, f, f.mx_pf)   -- every parameter the later checks need, one call
  if not p then gone(f, "docker:mx", msg, code); return r:unknown(("postconf on %s: %s (%s)"):format(f.mx_pf, msg, code)) end
  local function val(name) local v = p[name]; if type(v) == "table" then v = v.value or table.concat(v, ", ") end; return v or "" end
  f.relay_transport = val("relay_transport")
  if not contains(split_list(val("relay_domains")), f.domain) then
    r:fail("relay_domain_missing", ("%s is not in relay_domains of %s: the MX refuses its mail with 554 Relay access denied"):format(f.domain, f.mx_pf),
      { ev(f.mx, "postconf relay_domains", "relay_domains = " .. val("relay_domains")) })
  end
  if contains(split_list(val("mydestination")), f.domain) then
    r:fail("domain_local", ("%s is in mydestination of %s: the MX takes its mail as local instead of relaying it"):format(f.domain, f.mx_pf),
      { ev(f.mx, "postconf mydestination", "mydestination = " .. val("mydestination")) })
  end
  f.configured = parse_transport(f.relay_transport)
  f.next_hop_text = (f.configured or f.intended or {}).text
  local wrong = f.expected_transport and norm(f.relay_transport) ~= norm(f.expected_transport)
    or (not f.expected_transport and (not f.configured or (f.configured.kind ~= "lmtp" and f.configured.kind ~= "smtp")))
  if wrong then
    r:fail("relay_transport_wrong", ("relay_transport of %s is %q%s"):format(f.mx_pf, f.relay_transport,
      f.expected_transport and (", not " .. f.expected_transport) or ", not an lmtp: or smtp: next hop"),
      { ev(f.mx, "postconf relay_transport", "relay_transport = " .. f.relay_transport) })
  end
  local via = f.configured and f.configured.kind == "smtp" and (f.ms .. "'s Postfix, then Dovecot") or "Dovecot LMTP directly"
  ctx:note(("path: sender -> %s Postfix -> %s (%s)"):format(f.mx, via, f.relay_transport))
end

-- the next hop relay_transport really names, seen from the MX (and the intended one if it differs)
local function check_relay(ctx, f, r)
  local hops = {}
  if f.configured then hops[#hops + 1] = f.configured end
  if f.intended and (not f.configured or f.intended.text ~= f.configured.text) then hops[#hops + 1] = f.intended end
  if #hops == 0 then return r:skip("no usable relay_transport") end
  for _, nh in ipairs(hops) do
    local res, msg, code = ctx:tcp_check(f.mx, nh.host, nh.port, { timeout = T.connect })
    local configured = nh == f.configured
    local e = { ev(f.mx, ("tcp %s from %s"):format(nh.text, f.mx), msg or "open") }
    if not res and (code == "refused" or code == "timeout" or code == "unreachable") then
      local target = nh.kind == "smtp" and f.ms_pf or f.ms_dc
      if configured and f.wrong_transport then
        r:fail("relay_transport_wrong", ("the configured next hop %s does not answer from %s (%s)"):format(nh.text, f.mx, code), e)
      elseif f.down(target) then
        e[#e + 1] = ev(f.ms, "docker inspect", target .. " is not running")
        r:fail(nh.kind == "smtp" and "mailserver_postfix_down" or "dovecot_down",
          ("%s is stopped, so the next hop %s refuses connections from %s"):format(target, nh.text, f.mx), e,
          nh.kind == "smtp" and "mailserver.postfix" or "mailserver.dovecot")
      else
        r:fail("relay_unreachable", ("%s cannot connect to the next hop %s (%s)%s"):format(f.mx, nh.text, code,
          f.states[target] and " although " .. target .. " is running" or ""), e)
      end
    elseif not res then
      r:unknown(("cannot test %s from %s: %s (%s)"):format(nh.text, f.mx, msg, code))
    end
  end
end

-- RCPT at the MX from outside mynetworks: reproduces what a sender meets now
local function check_mx_rcpt(ctx, f, r)
  if not f.mx_ok_ip then return r:skip("no MX answered on port 25") end
  local res, msg, code = ctx:smtp_probe { host = f.mx_ok_ip, port = 25, from = f.probe_from, rcpt = f.addr,
    stop = "rcpt", bind = f.probe_source, timeout = T.reply }
  if not res then return r:unknown(("RCPT at %s:25: %s (%s)"):format(f.mx_ok_ip, msg, code)) end
  local st = res.stages or {}
  local bad = (st.mail and not st.mail.ok and st.mail) or (st.rcpt and st.rcpt[1] and not st.rcpt[1].ok and st.rcpt[1])
  if bad then
    local text = reply_text(bad)
    r:reply(text, "mx", ("the MX refuses RCPT for %s now: %s"):format(f.addr, text),
      { ev(f.mx, ("SMTP RCPT %s:25 from <%s>%s"):format(f.mx_ok_ip, f.probe_from, f.probe_source and (" via " .. f.probe_source) or ""), text) }, "mx.postfix")
  end
end

-- RCPT at the configured next hop (LMTP or SMTP), as the MX would ask it
local function check_next_rcpt(ctx, f, r)
  local nh = f.configured or f.intended
  if not nh then return r:skip("no usable relay_transport") end
  if f.wrong_transport and f.intended then nh = f.intended end
  local where = ("%s %s"):format(nh.kind:upper(), nh.text)
  -- first the greeting alone: a next hop that accepts and never greets stops every delivery
  local res, msg, code = ctx:smtp_probe { host = nh.host, port = nh.port, lmtp = nh.kind == "lmtp", stop = "helo", timeout = T.reply }
  if not res and code == "timeout" and tostring(msg):find("no reply", 1, true) then
    if nh.kind == "lmtp" then f.dead.dovecot = msg end   -- a Dovecot that does not greet is not asked again
    return r:fail("relay_not_greeting", ("the next hop %s accepts connections but does not answer within %ds"):format(nh.text, T.reply),
      { ev(f.ms, where, msg) }, "mx->mailserver")
  elseif not res then
    return r:unknown(("%s: %s (%s)"):format(where, msg, code))
  end
  if nh == f.configured and res.stages and res.stages.helo then f.next_tls_offered = res.stages.helo.starttls_offered == true end
  res, msg, code = ctx:smtp_probe { host = nh.host, port = nh.port, lmtp = nh.kind == "lmtp", from = "",
    rcpt = f.addr, stop = "rcpt", timeout = T.reply }
  if not res then
    return r:unknown(("%s greets but RCPT for %s got no answer: %s (%s); its user lookup may hang"):format(where, f.addr, msg, code))
  end
  where = where .. " RCPT"
  local rc = res.stages and res.stages.rcpt and res.stages.rcpt[1]
  if rc and not rc.ok then
    local text = reply_text(rc)
    if tostring(rc.code):sub(1, 1) == "5" and (text:lower():find("doesn't exist", 1, true) or text:lower():find("unknown", 1, true)) then
      f.next_refused_user = text
    end
    r:reply(text, "next", ("the next hop refuses RCPT for %s now: %s"):format(f.addr, text), { ev(f.ms, where, text) })
  end
end

local function check_maildir(ctx, f, r)
  if f.down(f.ms_dc) then return r:skip(f.ms_dc .. " is not running") end
  local paths = { f.maildir_root .. "/" .. f.domain }
  if f.user_maildir and f.user_maildir ~= "" then paths[#paths + 1] = f.maildir_root .. "/" .. tostring(f.user_maildir):gsub("/$", "") end
  -- Dovecot's home (its own view) is the directory that receives mail: it must exist on disk too
  local home = f.dovecot_view and f.dovecot_view.home and tostring(f.dovecot_view.home):gsub("/+$", "")
  if home and home ~= "" and home ~= paths[#paths] then paths[#paths + 1] = home end
  -- one exec for every path (find only prints: a read for the gate); a missing one is not an error
  local argv = { "find" }
  for _, p in ipairs(paths) do argv[#argv + 1] = p end
  for _, a in ipairs { "-maxdepth", "0", "-printf", "%p\t%u\t%g\t%m\t%y\n" } do argv[#argv + 1] = a end
  local res, msg, code = ctx:service_exec(f.ms_dc, argv, { timeout = T.exec })
  if not res then gone(f, "docker:ms", msg, code); return r:unknown(("find %s: %s (%s)"):format(paths[1], msg, code)) end
  if res.status ~= 0 and not res.stdout:find("%S") and not res.stderr:find("No such file", 1, true) then
    return r:unknown(("find %s: exit %s: %s"):format(paths[1], tostring(res.status), res.stderr:sub(1, 200)))
  end
  if home and home ~= "" and not res.stdout:find(home .. "\t", 1, true) then
    ctx:finding { severity = "warn", hop = f.ms .. ".maildir",
      message = ("Dovecot's home for %s, %s, does not exist on disk (the database row names %s): the first message creates it, and the user's client may read another directory"):format(
        f.addr, home, tostring(f.user_maildir)), evidence = { ev(f.ms, "find " .. home, "No such file or directory") } }
  end
  for line in res.stdout:gmatch("[^\n]+") do
    local p, user, group, mode, kind = line:match("^(.-)\t(%S+)\t(%S+)\t(%d+)\t(%S+)$")
    local m = tonumber(mode or "", 8) or 0
    if p and (user ~= f.maildir_owner or (m // 64) & 7 ~= 7) then
      return r:fail("maildir_permissions", ("%s is owned by %s:%s mode %s; Dovecot (as %s) needs it owned and rwx"):format(p, user, group, mode, f.maildir_owner),
        { ev(f.ms, "find " .. p, ("%s:%s %s %s"):format(user, group, mode, kind == "d" and "directory" or kind)) })
    end
  end
end

local function check_disk(ctx, f, r)
  if f.down(f.ms_dc) then return r:skip(f.ms_dc .. " is not running") end
  local df, msg, code = ctx:df(f.ms_dc, f.maildir_root)
  if not df then gone(f, "docker:ms", msg, code); return r:unknown(("df %s: %s (%s)"):format(f.maildir_root, msg, code)) end
  local limit = ctx.inventory.mail.disk_escalate_pct or 90
  if df.use_pct >= limit then
    r:fail("disk_full", ("the mail volume %s is %d%% full (%d KiB free): less than %d%% left"):format(f.maildir_root, df.use_pct, df.avail_kb, 100 - limit),
      { ev(f.ms, "df " .. f.maildir_root, ("%s %d%% used, %d KiB available"):format(df.mount or "", df.use_pct, df.avail_kb)) })
  end
end

-- every hop's log for the address -> history entries (the verdict weighs the latest)
local function outcome(f, m)
  local last = m.hops[#m.hops] or {}
  local stop = m.stopped_at or {}
  local reply = stop.reply or stop.reason or last.reply or last.reason or ""
  if last.kind == "reject" then reply = ("%s %s %s"):format(last.code or "", last.enhanced or "", last.reason or "") end
  local host = stop.host and f.alias(stop.host) or f.alias(last.host)
  local rewritten, rewritten_hop
  for _, h in ipairs(m.hops) do
    if h.orig_to and h.to and h.orig_to:lower() == f.addr:lower() and h.to:lower() ~= f.addr:lower() then
      rewritten, rewritten_hop = h.to, f.alias(h.host) .. ".postfix"
    end
  end
  local lines = last.lines or {}
  local dlines   -- the Dovecot hop's last lines: the sieve action is there (lib/chain.lua reads it)
  if last.kind == "dovecot" then dlines = {} for i = math.max(1, #lines - 3), #lines do dlines[#dlines + 1] = lines[i] end end
  return { time = m.last_time or m.first_time, host = host, delivered = m.delivered, status = m.final_status,
           mailbox = m.mailbox, message_id = m.message_id, user = last.kind == "dovecot" and last.user or nil, lines = dlines,
           reply = reply, line = lines[#lines], rewritten_to = rewritten,
           at = replies.where(reply, host == f.mx and "mx" or "mailserver"),
           hop = rewritten_hop or (host and (host .. (last.kind == "dovecot" and ".dovecot" or ".postfix"))) or nil,
           source = last.kind == "dovecot" and "dovecot log" or "postfix log" }
end

local function check_logs(ctx, f, r)
  local tracker = maillog.tracker { addr = f.addr, since = f.since }
  local read_from = {}
  for _, s in ipairs { { f.mx_pf, "docker:mx" }, { f.ms_pf, "docker:ms" }, { f.ms_dc, "docker:ms" } } do
    local svc, key = s[1], s[2]
    local host, name = svc:match("^(.-)/(.*)$")
    local on_path = svc ~= f.ms_pf or not f.configured or f.configured.kind == "smtp"
    if f.has(host, name) and on_path then
      if f.dead[key] or (key == "docker:mx" and f.dead["ssh:mx"]) then
        r:unknown(svc .. "'s log: " .. host .. "'s docker did not answer")
      else
        local logs, msg, code = ctx:docker_logs(svc, { since = f.since, timeout = T.exec })
        if not logs then
          gone(f, key, msg, code)
          r:unknown(("%s's log: %s (%s)"):format(svc, msg, code))
        else
          local n = 0
          for rec in logs do
            if n == 0 then local p = maillog.parse(rec.line); if p and p.host then f.aliases[p.host] = host end end
            tracker:feed_line(rec.ts and (rec.ts .. " " .. rec.line) or rec.line, { host = host, source = svc })
            n = n + 1
          end
          local emsg, ecode = logs:err()
          if emsg then gone(f, key, emsg, ecode); r:unknown(("%s's log ended early: %s (%s)"):format(svc, emsg, ecode)) end
          read_from[#read_from + 1] = ("%s: %d line(s)"):format(svc, n)
        end
      end
    end
  end
  local msgs = tracker:messages()
  for _, m in ipairs(msgs) do f.history[#f.history + 1] = outcome(f, m) end
  ctx:note(("%d message(s) for %s since %s (%s)"):format(#msgs, f.addr, iso(f.since), table.concat(read_from, ", ")))
  local last = f.history[#f.history]
  if last and not last.delivered then
    ctx:finding { severity = "warn", hop = last.hop, message = ("the last message for %s was %s: %s"):format(f.addr, last.status, last.reply or ""),
                  evidence = { ev(last.host, last.source, last.line or last.reply or "", iso(last.time)) } }
  end
end

local function check_queues(ctx, f, r)
  for _, s in ipairs { { f.mx_pf, "docker:mx" }, { f.ms_pf, "docker:ms" } } do
    local svc, key = s[1], s[2]
    local host = svc:match("^(.-)/")
    local on_path = svc ~= f.ms_pf or not f.configured or f.configured.kind == "smtp"
    if f.has(host, "postfix") and not f.down(svc) and on_path then
      if f.dead[key] or (key == "docker:mx" and f.dead["ssh:mx"]) then
        r:unknown(svc .. "'s queue: " .. host .. "'s docker did not answer")
      else
        local q, msg, code = ctx:postqueue(svc)
        if not q then
          gone(f, key, msg, code)
          r:unknown(("%s's queue: %s (%s)"):format(svc, msg, code))
        else
          for _, m in ipairs(q) do
            for _, rc in ipairs(m.recipients or {}) do
              local a = tostring(rc.address or ""):lower()
              local age = os.time() - (tonumber(m.arrival_time) or os.time())
              -- mail in transit (active/incoming, just arrived) is not waiting
              if a == f.addr:lower() and (rc.delay_reason or m.queue_name == "deferred" or m.queue_name == "hold" or age > 60) then
                f.queued[#f.queued + 1] = { service = svc, host = host, queue_id = m.queue_id, age = os.time() - (tonumber(m.arrival_time) or os.time()),
                                            reason = rc.delay_reason, queue = m.queue_name }
              end
            end
          end
        end
      end
    end
  end
end

-- name, hop, what it needs (a daemon found dead makes the check unknown without asking),
-- the causes it can confirm (and, when it passes, deny), probe = a live check --no-probe skips
local CHECKS = {
  { name = "db", hop = "mailserver.db", needs = { "sql" }, run = check_db, title = "the domain and the user exist in the database (document 1.1)",
    confirms = { "db_down", "db_error", "domain_missing", "user_missing", "user_disabled" } },
  { name = "dns", hop = "dns", needs = { "dns" }, run = check_dns, title = "the domain's MX records point at the MX gateway (document 4)",
    confirms = { "mx_missing", "mx_wrong" } },
  { name = "mx.ssh", hop = "mx.ssh", needs = {}, run = check_mx_ssh, title = "the MX gateway answers over SSH",
    confirms = { "mx_host_unreachable" } },
  { name = "containers", hop = "mailserver.dovecot", needs = {}, run = check_containers, title = "the Postfix, Dovecot and MariaDB containers run (document 4)",
    confirms = { "dovecot_down", "db_down" } },
  { name = "mx.smtp", hop = "mx.smtp", needs = {}, probe = true, run = check_mx_smtp, title = "every MX greets on port 25 and answers EHLO (document 4)",
    confirms = { "mx_unreachable", "mx_not_greeting", "mx_dnsbl_blocked", "mx_greylisted", "tls_required" } },
  { name = "mx.config", hop = "mx.postfix", needs = { "ssh:mx", "docker:mx" }, run = check_mx_config, title = "relay_domains and relay_transport on the MX (document 2.3)",
    confirms = { "relay_domain_missing", "relay_transport_wrong", "domain_local" } },
  { name = "mx.rcpt", hop = "mx.postfix", needs = {}, probe = true, run = check_mx_rcpt, title = "the MX accepts RCPT for the address from outside mynetworks",
    confirms = { "relay_domain_missing", "mx_recipient_refused", "tls_required", "mx_greylisted", "mx_dnsbl_blocked", "rate_limited", "mx_lookup_failure", "storage_insufficient" } },
  { name = "ms.resolve", hop = "mailserver.postfix", needs = { "docker:ms" }, run = function(ctx, f, r) chain.resolve(ctx, f, r, "ms") end,
    title = "the mail server's Postfix resolves the address (the chain on the smtp: path)",
    confirms = { "delivered_elsewhere", "domain_in_two_classes" } },
  { name = "mx.resolve", hop = "mx.postfix", needs = { "ssh:mx", "docker:mx" }, run = function(ctx, f, r) chain.resolve(ctx, f, r, "mx") end,
    title = "the MX resolves the address: domain class, postmap -q in every table that can change or refuse it, transport",
    confirms = { "address_rewritten", "delivered_elsewhere", "mx_recipient_refused", "domain_in_two_classes", "mx_lookup_failure" } },
  { name = "relay", hop = "mx->mailserver", needs = { "ssh:mx" }, run = check_relay, title = "the MX can connect to the next hop relay_transport names (document 3.1/3.2)",
    confirms = { "relay_unreachable", "dovecot_down", "mailserver_postfix_down", "relay_transport_wrong" } },
  { name = "next.rcpt", hop = "mailserver.dovecot", needs = {}, probe = true, run = check_next_rcpt, title = "the next hop accepts RCPT for the address (LMTP/SMTP, nothing delivered)",
    confirms = { "relay_not_greeting", "user_missing", "user_disabled", "domain_missing", "quota_exceeded", "lookup_failure", "db_down", "dovecot_down" } },
  { name = "dovecot", hop = "mailserver.dovecot", needs = { "docker:ms", "sql", "dovecot" }, run = chain.dovecot,
    title = "Dovecot's own view (doveadm user, quota, auth cache) against the database row",
    confirms = { "plus_tag_unsupported", "address_case_mismatch", "auth_negative_cache", "lookup_failure" } },
  { name = "pair", hop = "mx.postfix", needs = {}, run = chain.pair,
    title = "the hops as a pair: size limits, recipient_delimiter, the TLS level the MX requires of the next hop",
    confirms = { "size_limit_mismatch", "delimiter_mismatch", "tls_level_mismatch" } },
  { name = "maildir", hop = "mailserver.maildir", needs = { "docker:ms" }, run = check_maildir, title = "the Maildir's owner and mode (document 1.3)",
    confirms = { "maildir_permissions" } },
  { name = "disk", hop = "mailserver.disk", needs = { "docker:ms" }, run = check_disk, title = "free space on the mail volume (document 4)",
    confirms = { "disk_full" } },
  { name = "logs", hop = "logs", needs = {}, run = check_logs, title = "the address in every hop's log since --since (document 1.2, 1.3, 2.2)",
    confirms = {} },
  { name = "saved", hop = "mailserver.dovecot", needs = {}, run = chain.saved,
    title = "the last message saved: found by Message-ID in the mailbox, its folder, the sieve action, subscribed",
    confirms = { "delivered_to_junk", "delivered_elsewhere" } },
  { name = "queues", hop = "mx.queue", needs = {}, run = check_queues, title = "what waits in the Postfix queues for the address (document Q1)",
    confirms = {} },
}

-- `runbook check` loads this file: a check or reply row naming an unknown cause stops it here.
for _, c in ipairs(CHECKS) do causes.validate(c.confirms, "check " .. c.name) end
causes.validate(replies.causes(), "lib/replies.lua")

-- run_check(ctx, f, spec) -> the check's result record for lib/verdict.lua
local function run_check(ctx, f, spec)
  local allowed = {}
  for _, c in ipairs(spec.confirms) do allowed[c] = true end
  local r = setmetatable({ name = spec.name, allowed = allowed, fails = {}, whys = {} }, Result)
  ctx:step(spec.name, function()
    for _, need in ipairs(spec.needs) do
      local why = f.dead[need] or (need == "docker:mx" and f.dead["ssh:mx"])
      if why then r:unknown(("not asked: %s did not answer (%s)"):format(need, why)); return end
    end
    if spec.probe and f.no_probe then r:skip("--no-probe"); return end
    spec.run(ctx, f, r)
    for _, fl in ipairs(r.fails) do
      -- a classified refusal names its cause only in the verdict, once every check has run
      ctx:finding { severity = "fail", cause = fl.cause, hop = causes.hop(fl.hop or (fl.cause and causes.BY_NAME[fl.cause].hop) or spec.hop, f),
                    message = fl.cause and fl.message or (fl.message .. " (one of: " .. table.concat(fl.candidates, ", ") .. ")"),
                    evidence = fl.evidence }
    end
    for _, why in ipairs(r.whys) do
      ctx:finding { severity = "warn", hop = causes.hop(spec.hop, f), message = ("unknown: check %s could not run: %s"):format(spec.name, why) }
    end
    if r.skipped then ctx:skip(r.skipped) end
  end, spec.title)
  local status = #r.fails > 0 and "fail" or #r.whys > 0 and "unknown" or r.skipped and "skipped" or "ok"
  return { name = spec.name, hop = r.unknown_hop or spec.hop, host = spec.hop:match("^mailserver") and f.ms or f.mx, status = status,
           confirms = spec.confirms, fails = r.fails, why = table.concat(r.whys, "; "), on_path = true }
end

local function facts(ctx)
  local inv = ctx.inventory
  local addr = ctx.args.addr
  local mx, ms = inv.mail.mx_host or "ec2", inv.mail.mailserver_host or "dell"
  if not inv.hosts[mx] or not inv.hosts[ms] then
    error(("the inventory must name the MX host (mail.mx_host: %s) and the mail server (mail.mailserver_host: %s) under hosts"):format(mx, ms))
  end
  local f = {
    addr = addr, domain = addr:match("@(.+)$"), mx = mx, ms = ms,
    mx_pf = mx .. "/postfix", ms_pf = ms .. "/postfix", ms_dc = ms .. "/dovecot", ms_db = ms .. "/mariadb",
    db = inv.mail.database or "mail", expected_transport = inv.mail.relay_transport,
    maildir_owner = inv.mail.maildir_owner or "vmail",
    mx_addrs = inv.mail.mx_addresses or { inv.hosts[mx].address }, mx_ips = {},
    probe_from = inv.mail.probe_from or ("postmaster@" .. (addr:match("@(.+)$"))), probe_source = inv.mail.probe_source,
    since = os.time() - ctx.args.since, no_probe = ctx.args["no-probe"],
    dead = {}, states = {}, history = {}, queued = {}, aliases = {}, params = {}, chains = {},
  }
  -- the +tag form: the inventory's mail.recipient_delimiter (default "+") splits the local part
  f.tag_char = inv.mail.recipient_delimiter or "+"
  f.tag_base = resolve.strip(addr, f.tag_char)
  f.mx_addr_text = table.concat(f.mx_addrs, ", ")
  f.intended = parse_transport(f.expected_transport)
  f.next_hop_text = f.intended and f.intended.text
  f.has = function(host, svc) return inv.hosts[host] and inv.hosts[host].services and inv.hosts[host].services[svc] ~= nil end
  f.down = function(svc) return f.states[svc] ~= nil and f.states[svc].running == false end
  f.alias = function(h) return h and f.aliases[h] or h end
  local dc = f.has(ms, "dovecot") and inv.hosts[ms].services.dovecot or {}
  f.maildir_root = dc.maildir_root or "/var/mail/vmail"
  return f
end

-- --probe --apply: send a tagged message through the MX and follow it (a write: gated)
local function send_probe(ctx, f)
  local r, msg = ctx:smtp_probe { host = f.mx_ok_ip or f.mx_addrs[1], port = 25, from = f.probe_from, rcpt = f.addr,
    stop = "data", bind = f.probe_source, subject = "runbook probe " .. ctx.run_id, timeout = 20 }
  if not r then ctx:note("probe: " .. tostring(msg)); return end
  ctx:note(("probe message %s queued on %s as %s; following it"):format(r.message_id or "?", f.mx, tostring(r.queued_as)))
  local deadline = ctx:elapsed() + 30
  while ctx:elapsed() < deadline do
    local logs = ctx:docker_logs(f.ms_dc, { since = "3m", grep = { f.addr } })
    for rec in logs or function() end do
      if r.message_id and rec.line:find(r.message_id:gsub("[<>]", ""), 1, true) and rec.line:find("saved", 1, true) then
        ctx:note("probe: saved in the mailbox"); return
      end
    end
    ctx:sleep(1)
  end
  ctx:finding { severity = "warn", hop = "probe", message = "the probe message was not saved within 30 s" }
end

return {
  description = "Why mail to one address does not arrive: walk both hops, find where it stops, name the fix",
  kind = "diagnosis",
  help = [[
Follows the operators' procedure across the MX gateway (inventory mail.mx_host, e.g. "ec2",
Postfix in a container, reached over SSH) and the mail server (mail.mailserver_host, e.g. "dell":
Postfix, Dovecot and MariaDB in a compose project). Every check ends ok, fail or unknown:

  db          the domain and user rows (exists, enabled, maildir)           document 1.1
  dns         every MX record of the domain and where it points              document 4
  mx.ssh      the MX host answers over SSH
  containers  Postfix, Dovecot, MariaDB run                                  document 4
  mx.smtp     every MX greets on port 25 and answers EHLO (probe)            document 4
  mx.config   relay_domains, relay_transport, mydestination on the MX        document 2.3
  mx.rcpt     the MX accepts RCPT for the address from outside (probe)       document 2.4
  ms.resolve  the mail server's Postfix resolves the address (on the smtp:[dell]:25 path):
              domain class, postmap -q in every table that can change or refuse it (aliases
              incl. catch-all @domain and the +tag-stripped key, canonical maps, transport_maps,
              relay_recipient_maps, check_recipient_access)
  mx.resolve  the same on the MX (asked second: a rewrite the mail server's own table makes
              too, or a catch-all, is delivered_elsewhere; one only the MX makes address_rewritten)
  relay       the next hop relay_transport names answers, seen FROM the MX   document 3
  next.rcpt   the next hop accepts RCPT for the address (probe, LMTP/SMTP)   document 1.3
  dovecot     Dovecot's own view (doveadm user, quota, auth cache) against the database row
  pair        the hops as a pair: size limits, recipient_delimiter, TLS level for the next hop
  maildir     Maildir owner and mode; disk   free space on the mail volume   document 1.3, 4
  logs        every hop's log for the address in the window (--since)       document 1.2, 1.3, 2.2
  saved       the last message saved: found by Message-ID, its folder, sieve action, subscribed
  queues      what waits in the Postfix queues for the address              document Q1

The resolution chain of both Postfix hops and Dovecot's view are info findings (in --format json).
Mail saved into Junk (a sieve rule) or into another mailbox (an alias, a catch-all) is a problem
(delivered_to_junk, delivered_elsewhere), never healthy.

The verdict is healthy only when every check passes and no hop's log shows a failure for the
address after its last delivery. A check that could not run (a daemon, port or socket that does
not answer) is "unknown", never "no": with nothing confirmed the verdict is escalate/incomplete.
The failure the logs show is classified by the reply table (lib/replies.lua); the verdict names
the cause that stops the mail first along the path (lib/causes.lua), its evidence and the fix.
Reads only. The probes stop at RCPT (nothing is sent); --no-probe turns them off. --probe with
--apply also sends a tagged test message and follows it until it is saved.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the recipient whose mail does not arrive" },
    { name = "since", type = "duration", default = "1h", help = "how far back to read the logs" },
    { name = "probe", type = "boolean", help = "with --apply: also send a tagged test message through the MX and follow it" },
    { name = "no-probe", type = "boolean", help = "skip the live SMTP/LMTP probes (banner, EHLO, RCPT at the MX and the next hop)" },
    { name = "record", type = "boolean", help = "also print the verdict's input (check results, history, queues) as one JSON note (tests/fixtures/undelivered)" },
  },
  hosts = { "@mx", "@mailserver" },   -- mail.mx_host and mail.mailserver_host of the inventory
  examples = {
    "runbook run undelivered --addr info@example.jp",
    "runbook run undelivered --addr info@example.jp --since 6h --report /tmp/ticket.md",
    "runbook run undelivered --addr info@example.jp --format json | jq -c 'select(.event==\"verdict\")'",
  },

  run = function(ctx)
    local f = facts(ctx)
    local results = {}
    for _, spec in ipairs(CHECKS) do
      if spec.name == "relay" or spec.name == "next.rcpt" then
        f.wrong_transport = false
        for _, res in ipairs(results) do
          for _, fl in ipairs(res.fails) do if fl.cause == "relay_transport_wrong" then f.wrong_transport = true end end
        end
      end
      results[#results + 1] = run_check(ctx, f, spec)
    end
    if ctx.args.probe and ctx.apply then ctx:step("probe", function() send_probe(ctx, f) end, "send a tagged message and follow it (document 2.4)") end
    local input = { facts = f, checks = results, history = f.history, queued = f.queued }
    if ctx.args.record then
      local keep = {}
      for _, k in ipairs { "addr", "domain", "mx", "ms", "mx_pf", "ms_pf", "ms_dc", "ms_db", "db", "expected_transport",
                           "maildir_root", "mx_addr_text", "next_hop_text", "chains", "dovecot_view", "saved_view",
                           "rewritten_to", "rewritten_on", "elsewhere_to", "elsewhere_how", "elsewhere_where", "junk_message_id",
                           "size_limit_target", "delimiters_text", "delimiter_service", "dovecot_delimiter", "tls_param",
                           "two_classes", "two_classes_service", "row_email", "postfix_delimiter" } do keep[k] = f[k] end
      local recent = {}   -- the latest outcomes are the ones that count
      for i = math.max(1, #f.history - 9), #f.history do recent[#recent + 1] = f.history[i] end
      ctx:note("record: " .. verdict.encode { facts = keep, checks = results, history = recent, queued = f.queued })
    end
    local v = verdict.decide(input)
    -- The verdict: the first cause along the path -----------------------------------------------------
    local summary = {}   -- every check and how it ended: unknown ones say why
    for _, r in ipairs(results) do
      summary[#summary + 1] = { name = r.name, status = r.status, hop = r.hop, why = r.why ~= "" and r.why or nil }
    end
    ctx:verdict { status = v.status, hop = v.hop, cause = v.cause, message = v.message, evidence = v.evidence, fix = v.fix,
                  checks = summary }
  end,
}
