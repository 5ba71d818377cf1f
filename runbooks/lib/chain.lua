-- runbooks/lib/chain.lua: undelivered's checks of what every part DOES with the address (issue 11):
--
--   resolve(ctx, f, r, which)  one Postfix hop ("mx" or "ms"): the address classes of the domain,
--                              every lookup table that can change or refuse the address asked
--                              with `postmap -q` (one command per table, every key at once), the
--                              chain address -> rewritten address(es) -> transport -> next hop
--   dovecot(ctx, f, r)         Dovecot's own view (doveconf, doveadm user, quota, auth cache)
--                              against the database row and the home the row names
--   pair(ctx, f, r)            the two hops as a pair: size limits, recipient_delimiter, TLS level
--   saved(ctx, f, r)           the last message the logs show as saved: found in the mailbox by
--                              Message-ID (doveadm fetch), its folder, the sieve action, subscribed?
-- Each check gets undelivered's facts f and its result r (r:fail / r:unknown / r:skip). The chain
-- and Dovecot's view are also info findings (so `--format json` carries them) and f.chains /
-- f.dovecot_view (so `--record` keeps them). A lookup that could not run is unknown: never "not
-- found", never ok.
-- Depends on: lib.resolve (pure resolution rules).
local resolve = require "lib.resolve"

local M = {}

-- per-call timeouts (seconds): a lookup that hangs (a stalled Dovecot auth process, a stalled
-- database behind a mysql: table) costs at most this once; the daemon is then not asked again
M.T = { postmap = 4, doveadm = 4 }

local function ev(host, source, text, time) return { host = host, source = source, text = text, time = time } end

local function gone(f, key, why, code)
  if code == "timeout" or code == "refused" or code == "unreachable" then f.dead[key] = why end
end

local function lower(s) return tostring(s or ""):lower() end

-- params(ctx, f, svc) -> the hop's resolution parameters (postconf -x, one call, cached in f)
function M.params(ctx, f, svc)
  if f.params[svc] then return f.params[svc] end
  local p, msg, code = ctx:postconf(svc, resolve.PARAMS, { expand = true })
  if p then f.params[svc] = p end
  return p, msg, code
end

-- size("10240000") / ("64M") -> bytes (0 = no limit) | nil
local function bytes(v)
  local n, unit = tostring(v or ""):match("^%s*(%d+)%s*(%a*)%s*$")
  if not n then return nil end
  local mul = ({ [""] = 1, b = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 })[unit:lower():sub(1, 1)]
  return mul and math.tointeger(tonumber(n) * mul) or nil
end
M.bytes = bytes

-- ---------------------------------------------------------------- one Postfix hop

function M.resolve(ctx, f, r, which)
  local svc = which == "mx" and f.mx_pf or f.ms_pf
  local host = which == "mx" and f.mx or f.ms
  local key = which == "mx" and "docker:mx" or "docker:ms"
  local hop = which == "mx" and "mx.postfix" or "mailserver.postfix"
  if not f.has(host, "postfix") then return r:skip(svc .. " is not in the inventory") end
  if f.down(svc) then return r:skip(svc .. " is not running") end
  local on_path = which == "mx" or (f.configured and f.configured.kind == "smtp")
  local p, msg, code = M.params(ctx, f, svc)
  if not p then gone(f, key, msg, code); return r:unknown(("postconf -x on %s: %s (%s)"):format(svc, msg, code), hop) end
  local keys = resolve.keys(f.addr, p.recipient_delimiter)
  local answers, errors, stalled = {}, {}, nil
  local function ask(map, ks)
    if errors[map] then return end
    -- a table in the database that did not answer the db check would only wait the same way; a
    -- table that timed out means postmap (or what it asks) hangs: the rest is not asked either.
    -- Neither is the container's docker not answering (never f.dead[key] for it).
    local why = f.dead[key] or stalled or (map:match("^[mp][yg]sql:") and f.dead.sql and ("the database: " .. f.dead.sql))
    if why then errors[map] = { msg = "not asked: " .. why, code = "timeout" }; return end
    local a, amsg, acode = ctx:postmap(svc, map, ks, { timeout = M.T.postmap })
    if a then
      answers[map] = answers[map] or {}
      for k, v in pairs(a) do answers[map][k] = v end
    else
      errors[map] = { msg = amsg, code = acode }
      if acode == "timeout" then stalled = ("%s did not answer within %ds"):format(map, M.T.postmap) end
    end
  end
  for _, t in ipairs(resolve.tables(p)) do
    if answers[t.map] == nil then ask(t.map, keys) end
  end
  local ch = resolve.chain(p, f.addr, answers)
  if next(ch.missing) then                 -- a rewritten address needs its own keys: ask once more
    for map, ks in pairs(ch.missing) do if answers[map] then ask(map, ks) end end
    ch = resolve.chain(p, f.addr, answers)
  end
  -- evidence: every lookup, in Postfix's order
  local evs = {}
  local classes = resolve.classes(p, f.domain, answers)
  evs[#evs + 1] = ev(host, "postconf -x (address classes)", ("%s is in: %s"):format(f.domain, #classes > 0 and table.concat(classes, ", ") or "no class (default_transport)"))
  for _, s in ipairs(ch.steps) do
    local text
    if errors[s.table] then text = ("could not ask: %s (%s)"):format(errors[s.table].msg, errors[s.table].code)
    elseif s.unknown then text = "not asked"
    elseif s.found then text = ("%s -> %s%s"):format(s.key, s.value, s.note and (" (" .. s.note .. ")") or "")
    else text = s.key .. ": not found" end
    evs[#evs + 1] = ev(host, ("postmap -q (%s) %s"):format(s.param, s.table), text)
  end
  evs[#evs + 1] = ev(host, "transport", ("%s (from %s)"):format(tostring(ch.transport), tostring(ch.transport_from)))
  f.chains[which] = { service = svc, text = ch.text, on_path = on_path, classes = classes, transport = ch.transport,
                      final = ch.final, rewritten = ch.rewritten, catchall = ch.catchall, delimiter = p.recipient_delimiter, evidence = evs }
  ctx:finding { severity = "info", hop = (which == "mx" and f.mx or f.ms) .. ".postfix",
                message = ("resolution on %s%s: %s"):format(svc, on_path and "" or " (not on the mail's path)", ch.text), evidence = evs }
  if which == "mx" then f.chain_transport = ch.transport end
  -- findings
  if #classes >= 2 then
    f.two_classes, f.two_classes_service = table.concat(classes, " and "), svc
    -- the fix: keep relay_domains (the lab's and the document's class for the hosted domains),
    -- take the domain out of the other list when that list names it literally (not a table)
    for _, c in ipairs(classes) do
      if c ~= "relay_domains" and not f.two_classes_fix then
        local keep, literal = {}, false
        for _, item in ipairs(resolve.split(p[c])) do
          if lower(item) == lower(f.domain) then literal = true else keep[#keep + 1] = item end
        end
        if literal and #classes == 2 and classes[2] == "relay_domains" then
          f.two_classes_fix = { runbook = "postfix-param-set", args = { service = svc, name = c, value = table.concat(keep, ", ") } }
        end
      end
    end
    local e = {}
    for _, c in ipairs(classes) do e[#e + 1] = ev(host, "postconf -x " .. c, c .. " = " .. tostring(p[c])) end
    r:fail("domain_in_two_classes", ("%s is listed in %s on %s: Postfix warns \"do not list domain %s in BOTH ...\" and uses only one of them"):format(
      f.domain, f.two_classes, svc, f.domain), e, hop)
  end
  for map, e in pairs(errors) do
    if which == "mx" and e.code == "lookup" then
      r:fail("mx_lookup_failure", ("the table %s on %s cannot be queried: %s"):format(map, svc, e.msg), { ev(host, "postmap -q - " .. map, e.msg) })
    else
      r:unknown(("postmap -q - %s on %s: %s (%s)"):format(map, svc, e.msg, e.code), hop)
    end
  end
  local unasked = {}
  for _, s in ipairs(ch.steps) do if s.unknown and not errors[s.table] then unasked[#unasked + 1] = s.table end end
  if #unasked > 0 then r:unknown(("%s: not asked: %s"):format(svc, table.concat(unasked, ", ")), hop) end
  if ch.refused then
    local text = ("%s: %s"):format(ch.refused.table, ch.refused.text)
    if which == "mx" then
      r:fail("mx_recipient_refused", ("%s refuses %s itself: %s (%s)"):format(svc, f.addr, ch.refused.text, ch.refused.param), { ev(host, "postmap -q " .. (ch.refused.key or f.addr) .. " " .. ch.refused.table, text) })
    else
      ctx:finding { severity = "warn", hop = f.ms .. ".postfix", message = ("%s would refuse %s: %s"):format(svc, f.addr, text), evidence = evs }
    end
  end
  if ch.rewritten then
    -- Which cause: the mail goes to another MAILBOX of the system (delivered_elsewhere) when a
    -- catch-all takes it, or when the mail server's own table (the aliases of the system, which
    -- the MX's map may copy) sends it there; a rewrite only the MX's own map makes is
    -- address_rewritten. ms.resolve runs first, so the MX knows what the mail server says.
    local by = ch.rewritten_by
    local how = ("%s %s in %s (%s)"):format(ch.catchall and "the catch-all" or "the alias", by.key, by.table, by.param)
    local e = { ev(host, ("postmap -q %s %s"):format(by.key, by.table), ("%s -> %s"):format(by.key, by.value)) }
    local to = table.concat(ch.final, ", ")
    local ms = f.chains.ms
    if which == "mx" and not ch.catchall and not (ms and ms.rewritten) then
      f.rewritten_to, f.rewritten_on = to, svc
      r:fail("address_rewritten", ("%s rewrites %s to %s: %s"):format(svc, f.addr, to, how), e, "mx.postfix")
    elseif which == "mx" or on_path then
      f.elsewhere_to, f.elsewhere_how, f.elsewhere_where = to, how, svc
      if which == "mx" and ms and ms.rewritten then
        for _, x in ipairs(ms.rewrite_evidence or {}) do e[#e + 1] = x end
        f.elsewhere_where = svc .. " and " .. ms.service
      end
      r:fail("delivered_elsewhere", ("%s sends mail for %s to %s: %s"):format(svc, f.addr, to, how), e, "mailserver.alias")
    else
      f.chains.ms.rewrite_evidence = e
      ctx:finding { severity = "warn", hop = f.ms .. ".postfix",
        message = ("%s would send %s to %s (%s); the MX delivers by %s, past it, so the MX's own table decides"):format(svc, f.addr, to, how, tostring(f.relay_transport)), evidence = e }
    end
  end
end

-- ---------------------------------------------------------------- Dovecot's view

local DOVECONF = { "recipient_delimiter", "auth_cache_size", "auth_cache_ttl", "auth_cache_negative_ttl", "auth_username_format", "plugin" }

local function nonzero(v)
  local s = tostring(v or ""):match("^%s*(%S*)")
  return s ~= "" and s ~= "0" and not s:match("^0%a") and s:match("^%d") ~= nil
end

function M.dovecot(ctx, f, r)
  if not f.has(f.ms, "dovecot") then return r:skip(f.ms_dc .. " is not in the inventory") end
  if f.down(f.ms_dc) then return r:skip(f.ms_dc .. " is not running") end
  local conf, msg, code = ctx:doveconf(f.ms_dc, DOVECONF, { timeout = M.T.doveadm })
  if not conf then gone(f, "docker:ms", msg, code); return r:unknown(("doveconf on %s: %s (%s)"):format(f.ms_dc, msg, code)) end
  f.dovecot_conf = conf
  f.dovecot_delimiter = conf.recipient_delimiter or ""
  local cache = nonzero(conf.auth_cache_size)
  local neg = cache and nonzero(conf.auth_cache_negative_ttl)
  local cache_text = ("auth_cache_size = %s, auth_cache_ttl = %s, auth_cache_negative_ttl = %s"):format(
    tostring(conf.auth_cache_size), tostring(conf.auth_cache_ttl), tostring(conf.auth_cache_negative_ttl))
  local u, umsg, ucode = ctx:doveadm_user(f.ms_dc, f.addr, { timeout = M.T.doveadm })
  if not u then
    -- a hung auth process (or userdb) is Dovecot not answering, not its container's docker
    if ucode == "timeout" then f.dead.dovecot = umsg end
    return r:unknown(("doveadm user %s: %s (%s)"):format(f.addr, umsg, ucode))
  end
  local evs = { ev(f.ms, "doveconf", ("recipient_delimiter = %s; auth_username_format = %s; %s"):format(
    tostring(conf.recipient_delimiter), tostring(conf.auth_username_format), cache_text)) }
  local view = { found = u.found, cache = cache, negative_cache = neg, delimiter = f.dovecot_delimiter }
  if u.found then
    view.home, view.uid, view.mail = u.fields.home, u.fields.uid, u.fields.mail
    evs[#evs + 1] = ev(f.ms, "doveadm user " .. f.addr, ("found: home=%s uid=%s gid=%s%s"):format(tostring(u.fields.home),
      tostring(u.fields.uid), tostring(u.fields.gid), u.fields.quota_rule and (" quota_rule=" .. u.fields.quota_rule) or ""))
    local q = ctx:doveadm_quota(f.ms_dc, f.addr, { timeout = M.T.doveadm })
    if q then
      for _, row in ipairs(q) do
        evs[#evs + 1] = ev(f.ms, "doveadm quota get -u " .. f.addr, ("%s %s: %s of %s (%s%%)"):format(row.name, row.type,
          tostring(row.value), tostring(row.limit), tostring(row.percent)))
      end
      view.quota = q
    end
  else
    evs[#evs + 1] = ev(f.ms, "doveadm user " .. f.addr, "not found: " .. tostring(u.text))
    -- the passdb's answer too (found or not: its fields, a hash among them, are never kept)
    local a, amsg, acode = ctx:doveadm_auth(f.ms_dc, f.addr, { timeout = M.T.doveadm })
    evs[#evs + 1] = ev(f.ms, "doveadm auth lookup " .. f.addr, a and (a.found and "passdb: found" or ("passdb: not found " .. tostring(a.text)))
      or ("could not ask: " .. tostring(amsg) .. " (" .. tostring(acode) .. ")"))
    view.passdb_found = a and a.found
  end
  if f.row then
    evs[#evs + 1] = ev(f.ms, "sql users", ("row: email=%q enabled=%s maildir=%s"):format(f.row.email, tostring(f.row.enabled), tostring(f.row.maildir)))
  end
  f.dovecot_view = view
  view.evidence = evs
  ctx:finding { severity = "info", hop = f.ms .. ".dovecot",
    message = ("Dovecot's view of %s: %s%s; %s"):format(f.addr, u.found and "found" or "NOT found",
      u.found and (", home " .. tostring(view.home)) or "", cache and ("auth cache on (" .. cache_text .. ")") or "no auth cache"), evidence = evs }
  local row = f.row
  local enabled = row and tonumber(row.enabled) == 1
  if u.found then
    if row and row.maildir and view.home then
      local want = (f.maildir_root .. "/" .. tostring(row.maildir)):gsub("/+", "/"):gsub("/$", "")
      local have = tostring(view.home):gsub("/+", "/"):gsub("/$", "")
      if want ~= have then
        ctx:finding { severity = "warn", hop = f.ms .. ".dovecot",
          message = ("Dovecot's home for %s is %s, but the database row names %s: mail goes to one, the user may read the other"):format(f.addr, have, want),
          evidence = evs }
      end
    end
    if f.next_refused_user and enabled and neg then
      r:fail("auth_negative_cache", ("the LMTP RCPT for %s is refused as unknown although the row is enabled and doveadm user finds it: Dovecot answers from its negative auth cache (%s)"):format(f.addr, cache_text), evs)
    end
    return
  end
  -- Dovecot does not know the address: say why when the database says it should (a missing
  -- domain row is the db check's finding: Dovecot's user_query joins the domains table)
  if not row or not enabled or f.domain_row_missing then return end
  f.row_email = row.email
  if f.tag_base and not tostring(f.dovecot_delimiter):find(f.tag_char, 1, true) then
    f.postfix_delimiter = f.tag_char
    return r:fail("plus_tag_unsupported", ("Dovecot does not strip the tag of %s (its recipient_delimiter is %q): the row %s exists, but Dovecot looks up %s"):format(
      f.addr, f.dovecot_delimiter, row.email, f.addr), evs)
  end
  if row.email ~= f.addr and row.email ~= f.tag_base then
    return r:fail("address_case_mismatch", ("the users row is %q, not %q (%s): Dovecot's lookup does not find it"):format(row.email, f.addr,
      lower(row.email):gsub("%s+$", "") == lower(f.addr) and (row.email:find("%s$") and "trailing space" or "case") or "differs"), evs)
  end
  if neg then
    return r:fail("auth_negative_cache", ("the row for %s exists and is enabled, yet Dovecot says it does not exist: its auth cache keeps negative answers (%s)"):format(f.addr, cache_text), evs)
  end
  r:fail("lookup_failure", ("the row for %s exists and is enabled, yet Dovecot's userdb does not find it: check user_query against the row"):format(f.addr), evs)
end

-- ---------------------------------------------------------------- the hops as a pair

local function chars_missing(have, want)
  local miss = {}
  for i = 1, #tostring(want or "") do
    local c = want:sub(i, i)
    if not tostring(have or ""):find(c, 1, true) then miss[#miss + 1] = c end
  end
  return table.concat(miss)
end

function M.pair(ctx, f, r)
  local mxp, msp, dc = f.params[f.mx_pf], f.params[f.ms_pf], f.dovecot_conf
  -- 1. sizes: what the MX accepts must not be more than what the next parts accept
  if mxp then
    local mx_size = bytes(mxp.message_size_limit)
    local limits = {}
    if msp then limits[#limits + 1] = { f.ms_pf .. " message_size_limit", bytes(msp.message_size_limit), msp.message_size_limit } end
    if dc then
      local q = dc["plugin/quota_max_mail_size"]
      if q then limits[#limits + 1] = { f.ms_dc .. " quota_max_mail_size", bytes(q), q } end
    end
    local e = { ev(f.mx, "postconf -x message_size_limit", ("%s: %s"):format(f.mx_pf, tostring(mxp.message_size_limit))) }
    local smallest
    for _, l in ipairs(limits) do
      e[#e + 1] = ev(f.ms, l[1], tostring(l[3]))
      if l[2] and l[2] > 0 and (mx_size == 0 or (mx_size and mx_size > l[2])) and (not smallest or l[2] < smallest[2]) then smallest = l end
    end
    if smallest then
      f.size_limit_target = smallest[2]
      r:fail("size_limit_mismatch", ("%s accepts messages up to %s bytes, but %s is %d: a message in between is accepted by the MX and then bounced by the mail server"):format(
        f.mx_pf, mx_size == 0 and "any size (0 = no limit)" or tostring(mx_size), smallest[1], smallest[2]), e)
    end
  end
  -- 2. recipient_delimiter: every Postfix hop's characters must be Dovecot's too
  if mxp and dc then
    local dd = f.dovecot_delimiter or ""
    local parts = { ("%s %q"):format(f.mx_pf, mxp.recipient_delimiter or "") }
    local bad
    if chars_missing(dd, mxp.recipient_delimiter) ~= "" then bad = f.mx_pf end
    if msp then
      parts[#parts + 1] = ("%s %q"):format(f.ms_pf, msp.recipient_delimiter or "")
      if not bad and chars_missing(dd, msp.recipient_delimiter) ~= "" then bad = f.ms_pf end
    end
    parts[#parts + 1] = ("%s %q"):format(f.ms_dc, dd)
    f.delimiters_text = table.concat(parts, ", ")
    if bad then
      f.delimiter_service = bad
      r:fail("delimiter_mismatch", ("recipient_delimiter differs: %s; Postfix accepts addresses with a tag Dovecot will not strip (user+tag@ is refused as unknown)"):format(f.delimiters_text),
        { ev(f.mx, "postconf -x recipient_delimiter / doveconf recipient_delimiter", f.delimiters_text) })
    end
  end
  -- 3. TLS: the level the MX requires for its next hop against what the next hop offers
  if mxp and f.configured then
    local param = f.configured.kind == "lmtp" and "lmtp_tls_security_level" or "smtp_tls_security_level"
    local level = mxp[param] or ""
    if resolve.tls_requires(level) then
      f.tls_param = param
      if f.next_tls_offered == nil then
        r:unknown(("%s = %s requires TLS, but whether %s offers STARTTLS is not known (its probe did not run)"):format(param, level, f.configured.text))
      elseif not f.next_tls_offered then
        r:fail("tls_level_mismatch", ("%s on %s is %s (TLS required), but the next hop %s offers no STARTTLS"):format(param, f.mx_pf, level, f.configured.text),
          { ev(f.mx, "postconf -x " .. param, param .. " = " .. level), ev(f.ms, ("%s %s EHLO"):format(f.configured.kind:upper(), f.configured.text), "no STARTTLS in the capabilities") })
      end
    end
  end
  local missing = {}
  if not mxp then missing[#missing + 1] = f.mx_pf end
  if not msp and f.has(f.ms, "postfix") then missing[#missing + 1] = f.ms_pf end
  if not dc and f.has(f.ms, "dovecot") then missing[#missing + 1] = f.ms_dc end
  if #missing > 0 then r:unknown(("the settings of %s could not be read: not compared"):format(table.concat(missing, ", "))) end
end

-- ---------------------------------------------------------------- past "Saved"

-- sieve_action(lines) -> "fileinto 'Junk'" | "discard" | "redirect to x" | "keep" | nil
function M.sieve_action(lines)
  for _, l in ipairs(lines or {}) do
    local low = l:lower()
    if low:find("sieve:", 1, true) then
      local box = l:match("stored mail into mailbox '([^']*)'")
      if box then return (box == "INBOX" and "keep (INBOX)" or ("fileinto '" .. box .. "'")), box end
      if low:find("discard", 1, true) then return "discard" end
      local to = l:match("forwarded to <([^>]*)>") or l:match("redirect[^<]*<([^>]*)>")
      if to then return "redirect to " .. to, nil, to end
    end
  end
  return nil
end

function M.saved(ctx, f, r)
  local last
  for _, h in ipairs(f.history) do if h.delivered and not h.rewritten_to then last = h end end
  if not last then return r:skip("no message for " .. f.addr .. " was saved in the window") end
  local user = last.user or f.addr
  local action, _, redirect_to = M.sieve_action(last.lines)
  local folder = last.mailbox or "INBOX"
  local e = { ev(last.host or f.ms, "dovecot log", ("%s saved into %s for %s%s%s"):format(
    last.message_id or "(no Message-ID)", folder, user, action and ("; sieve: " .. action) or "", last.line and (" | " .. last.line) or ""),
    last.time and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(last.time)) or nil) }
  local found, subscribed
  local dead = f.dead["docker:ms"] or f.dead.dovecot or (f.dead.sql and ("the database: " .. f.dead.sql))
  local unknown_user = f.dovecot_view and f.dovecot_view.found == false and lower(user) == lower(f.addr)
  if unknown_user then
    -- Dovecot does not know the user now (the dovecot check says why): its mailbox cannot be asked
    e[#e + 1] = ev(f.ms, "doveadm fetch", "not looked up: Dovecot does not know " .. user .. " now")
  elseif last.message_id and f.has(f.ms, "dovecot") and not f.down(f.ms_dc) and dead then
    -- doveadm fetch looks the user up first: with the database or Dovecot not answering it would wait
    r:unknown(("the message %s was not looked up: %s did not answer (%s)"):format(last.message_id, f.ms_dc, dead))
  elseif last.message_id and f.has(f.ms, "dovecot") and not f.down(f.ms_dc) then
    local hits, msg, code = ctx:doveadm_find(f.ms_dc, user, last.message_id, { timeout = M.T.doveadm })
    if not hits then
      if code == "timeout" then f.dead.dovecot = msg end
      r:unknown(("doveadm fetch for %s: %s (%s)"):format(last.message_id, msg, code))
    else
      found = hits[1]
      e[#e + 1] = ev(f.ms, "doveadm fetch -u " .. user .. " mailbox uid header message-id " .. last.message_id,
        found and ("in %s (uid %s)%s"):format(found.mailbox, tostring(found.uid), #hits > 1 and (" and " .. (#hits - 1) .. " more") or "")
        or "not in the mailbox any more (expunged or moved by the user)")
      if found then folder = found.mailbox end
    end
    if folder ~= "INBOX" then
      local subs = not f.dead.dovecot and ctx:doveadm_mailboxes(f.ms_dc, user, { subscribed = true, timeout = M.T.doveadm })
      if subs then
        subscribed = false
        for _, s in ipairs(subs) do if s == folder then subscribed = true end end
        e[#e + 1] = ev(f.ms, "doveadm mailbox list -s -u " .. user, ("subscribed: %s"):format(table.concat(subs, ", ")))
      end
    end
  end
  f.saved_view = { message_id = last.message_id, folder = folder, user = user, sieve = action, subscribed = subscribed, found = found ~= nil }
  ctx:finding { severity = "info", hop = f.ms .. ".dovecot",
    message = ("the last saved message for %s: %s in %s%s"):format(f.addr, tostring(last.message_id), folder, action and (" (sieve: " .. action .. ")") or ""), evidence = e }
  local lu = lower(user)
  if redirect_to or (lu ~= lower(f.addr) and lu ~= lower(f.tag_base)) then
    f.elsewhere_to = redirect_to or user
    f.elsewhere_how = redirect_to and "a sieve redirect" or "the mail server's alias resolution"
    f.elsewhere_where = redirect_to and ("the sieve script of " .. f.addr) or f.ms
    return r:fail("delivered_elsewhere", ("the last message for %s (%s) went to %s (%s), not to its own mailbox"):format(f.addr, tostring(last.message_id), f.elsewhere_to, f.elsewhere_how), e)
  end
  if folder ~= "INBOX" then
    f.junk_message_id = last.message_id
    f.junk_folder = folder
    return r:fail("delivered_to_junk", ("the last message for %s (%s) was saved into '%s'%s, not INBOX%s"):format(f.addr, tostring(last.message_id), folder,
      action and (" by sieve (" .. action .. ")") or "", subscribed == false and ("; '" .. folder .. "' is not subscribed, so a mail client does not show it") or
      subscribed and ("; '" .. folder .. "' is subscribed") or ""), e)
  end
end

return M
