-- runbooks/lib/causes.lua: the cause table of `undelivered`, in the order mail meets them.
--
-- One row per cause code: the hop where it stops the mail (written generically: `mx` is the
-- inventory's mail.mx_host, `mailserver` its mail.mailserver_host), the verdict's status when it
-- is the cause (default "problem"), and the fix: fix(f) returns a remedy {runbook=, args=} (shown
-- as a `runbook run ...` command line) or a sentence for humans. f holds the run's facts (addr,
-- domain, mx, ms, mx_pf, ms_pf, ms_dc, ms_db, expected_transport, next_hop, ...).
-- confirm_only: the cause is never believed from a reply alone (a refusal that reads "user doesn't
-- exist" names it only when a check confirms it: the row exists, Dovecot does not find it).
-- The verdict names the cause that comes FIRST in this list. Add a cause: add a row; name it in a
-- check's `confirms` or a reply row (lib/replies.lua). `runbook check undelivered` refuses a
-- check or reply row that names a cause missing here.
-- Depends on: nothing.
local M = {}

local function restart(svc) return { runbook = "container-restart", args = { service = svc } } end

M.LIST = {
  { cause = "mx_missing", hop = "dns",
    fix = function(f) return ("publish an MX record for %s that points at the MX gateway (%s)"):format(f.domain, f.mx_addr_text) end },
  { cause = "mx_wrong", hop = "dns",
    fix = function(f) return ("correct the MX record of %s: it must point at the MX gateway (%s)"):format(f.domain, f.mx_addr_text) end },
  { cause = "mx_host_unreachable", hop = "mx.ssh", status = "escalate",
    fix = function(f) return ("the MX gateway %s cannot be reached over SSH: check the host and the network (escalate if both hosts fail)"):format(f.mx) end },
  { cause = "mx_unreachable", hop = "mx.smtp", fix = function(f) return restart(f.mx_pf) end },
  { cause = "mx_not_greeting", hop = "mx.smtp",
    fix = function(f) return ("port 25 of the MX accepts connections but sends no greeting: check what listens there and %s's Postfix (smtpd/postscreen stuck?), then: runbook run container-restart --service %s"):format(f.mx, f.mx_pf) end },
  { cause = "mx_dnsbl_blocked", hop = "mx.smtp",
    fix = function() return "the MX rejects the sender's host by a DNS blocklist: check the blocklist answers (open resolver?) and the postscreen/smtpd settings" end },
  { cause = "mx_greylisted", hop = "mx.smtp",
    fix = function() return "the MX greylists the sender: the mail is delayed, not lost; whitelist the sender if the delay hurts" end },
  { cause = "tls_required", hop = "mx.smtp",
    fix = function(f) return ("the MX requires STARTTLS from senders (smtpd_tls_security_level = encrypt): set it to may on %s unless every sender uses TLS"):format(f.mx_pf) end },
  { cause = "relay_domain_missing", hop = "mx.postfix",
    fix = function(f) return { runbook = "relay-domain-add", args = { domain = f.domain } } end },
  { cause = "mx_recipient_refused", hop = "mx.postfix",
    fix = function(f) return ("the MX's own recipient check refuses %s (relay_recipient_maps / a check_recipient_access table): add the address there (postmap the table) or remove the stale entry on %s"):format(f.addr, f.mx_pf) end },
  { cause = "size_limit", hop = "mx.postfix",
    fix = function(f) return ("the message is larger than message_size_limit on %s: raise it (postconf -e message_size_limit=...) or have the sender send less; keep the MX's limit not above the mail server's"):format(f.mx_pf) end },
  { cause = "storage_insufficient", hop = "mx.queue",
    fix = function(f) return ("the MX's queue file system is too full for the message (452 4.3.1 Insufficient system storage): free space in %s's queue directory or lower message_size_limit"):format(f.mx_pf) end },
  { cause = "mx_lookup_failure", hop = "mx.postfix",
    fix = function(f) return ("a lookup table of %s fails (451 4.3.0 Temporary lookup failure): check the maps postconf names and rebuild them (postmap), see its log"):format(f.mx_pf) end },
  { cause = "content_filter_down", hop = "mx.postfix",
    fix = function(f) return ("a content filter or milter of %s does not answer: start it, or remove it from content_filter/smtpd_milters"):format(f.mx_pf) end },
  { cause = "rate_limited", hop = "mx.postfix",
    fix = function() return "a rate limit refuses the mail: it is delayed; raise the limit for this sender/recipient if legitimate" end },
  { cause = "spam_rejected", hop = "mx.postfix",
    fix = function() return "a content filter rejected the message as spam: check the filter's score for it (rspamd/amavis history) and whitelist if it is legitimate" end },
  { cause = "domain_local", hop = "mx.postfix",
    fix = function(f) return ("%s is in mydestination of %s, so the MX delivers it locally (and bounces) instead of relaying: remove it from mydestination (postconf -e mydestination=...) and reload"):format(f.domain, f.mx_pf) end },
  { cause = "domain_in_two_classes", hop = "mx.postfix",
    fix = function(f) return f.two_classes_fix or ("%s is listed in more than one address class on %s (%s): Postfix warns and uses the first; keep it in exactly one (relay_domains on the MX, one virtual class on the mail server): runbook run postfix-param-set --service %s --name PARAM --value ..."):format(f.domain, f.two_classes_service or f.mx_pf, f.two_classes or "?", f.two_classes_service or f.mx_pf) end },
  { cause = "mail_loop", hop = "mx.postfix",
    fix = function(f) return ("%s treats %s as its own (mydestination / virtual domains) and mail loops back: remove the domain from mydestination on %s so relay_domains and relay_transport apply"):format(f.mx, f.domain, f.mx_pf) end },
  { cause = "relay_transport_wrong", hop = "mx.postfix",
    fix = function(f) return { runbook = "relay-transport-set", args = { value = f.expected_transport } } end },
  { cause = "transport_unavailable", hop = "mx.postfix",
    fix = function(f) return ("a transport the MX uses for %s is not defined in master.cf or its table is unreadable (mail transport unavailable): check transport_maps and master.cf on %s, then: runbook run queue-flush --service %s"):format(f.domain, f.mx_pf, f.mx_pf) end },
  { cause = "relay_unreachable", hop = "mx->mailserver",
    fix = function(f) return ("restore the link from %s to %s (tailnet / firewall), then: runbook run queue-flush --service %s"):format(f.mx, f.next_hop_text or "the next hop", f.mx_pf) end },
  { cause = "relay_not_greeting", hop = "mx->mailserver",
    fix = function(f) return ("the next hop %s accepts connections but does not answer: check the daemon listening there (Dovecot LMTP / Postfix) on %s, then: runbook run queue-flush --service %s"):format(f.next_hop_text or "?", f.ms, f.mx_pf) end },
  { cause = "relay_tls_failed", hop = "mx->mailserver",
    fix = function(f) return ("TLS between %s and the next hop fails (policy requires TLS the next hop does not offer, or the certificate is not trusted): align lmtp/smtp_tls_security_level with what %s offers"):format(f.mx, f.ms) end },
  { cause = "tls_level_mismatch", hop = "mx->mailserver",
    fix = function(f) return f.tls_fix or ("the TLS level %s requires for the next hop is more than %s offers: lower it (runbook run postfix-param-set --service %s --name %s --value may) or enable STARTTLS on the next hop"):format(f.mx, f.ms, f.mx_pf, f.tls_param or "lmtp_tls_security_level") end },
  { cause = "mailserver_postfix_down", hop = "mailserver.postfix", fix = function(f) return restart(f.ms_pf) end },
  { cause = "dovecot_down", hop = "mailserver.dovecot", fix = function(f) return restart(f.ms_dc) end },
  { cause = "db_down", hop = "mailserver.db", fix = function(f) return restart(f.ms_db) end },
  { cause = "lookup_failure", hop = "mailserver.db",
    fix = function(f) return ("the user lookup fails (Temporary lookup failure / userdb query failed): check Dovecot's SQL userdb against the database %s (credentials, query, table), see Dovecot's log"):format(f.db) end },
  { cause = "plus_tag_unsupported", confirm_only = true, hop = "mailserver.dovecot",
    fix = function(f) return ("Postfix passes %s with its +tag to Dovecot, whose recipient_delimiter (%q) does not strip it: set recipient_delimiter = %s in Dovecot on %s (the same as Postfix's), or remove the delimiter from Postfix"):format(f.addr, f.dovecot_delimiter or "", f.postfix_delimiter or "+", f.ms_dc) end },
  { cause = "address_case_mismatch", confirm_only = true, hop = "mailserver.db",
    fix = function(f) return ("the users row is %q, not %q: Dovecot's lookup does not match it; correct the row's address (lower case, no spaces) through the User Management API, or lower-case lookups (auth_username_format = %%Lu) on %s"):format(f.row_email or "?", f.addr, f.ms_dc) end },
  { cause = "auth_negative_cache", confirm_only = true, hop = "mailserver.dovecot",
    fix = function(f) return { runbook = "auth-cache-flush", args = { addr = f.addr } } end },
  { cause = "domain_missing", hop = "mailserver.db",
    fix = function(f) return { runbook = "domain-create", args = { domain = f.domain } } end },
  { cause = "user_missing", hop = "mailserver.db",
    fix = function(f) return { runbook = "user-create", args = { addr = f.addr } } end },
  { cause = "user_disabled", hop = "mailserver.db",
    fix = function(f) return { runbook = "user-enable", args = { addr = f.addr } } end },
  { cause = "address_rewritten", hop = "mailserver.alias",
    fix = function(f)
      if f.alias_only then return { runbook = "undelivered", args = { addr = f.alias_only } } end
      return ("mail for %s is delivered to %s instead (an alias or catch-all rewrites it): remove or correct the alias (virtual_alias_maps on %s) or add a self-alias"):format(f.addr, f.rewritten_to or "another address", f.rewritten_on or "the hop named") end },
  { cause = "forward_rejected", hop = "mailserver.alias",
    fix = function(f) return ("mail for %s is forwarded to an outside mailbox that refuses it (SPF/DMARC without SRS): deliver locally or add SRS"):format(f.addr) end },
  { cause = "delivered_elsewhere", hop = "mailserver.alias",
    fix = function(f)
      -- an address that is only an alias: follow its target (lib/verdict.lua, alias_only)
      if f.alias_only then return { runbook = "undelivered", args = { addr = f.alias_only } } end
      return ("mail for %s is delivered to %s (%s): remove or correct that alias/catch-all%s, or add an identity alias (%s -> %s)"):format(f.addr, f.elsewhere_to or "another mailbox", f.elsewhere_how or "an alias", f.elsewhere_where and (" in " .. f.elsewhere_where) or "", f.addr, f.addr) end },
  { cause = "lmtp_crashed", hop = "mailserver.dovecot",
    fix = function(f) return ("Dovecot's LMTP drops the connection while receiving (vsz_limit / crash): see %s's log, raise service lmtp { vsz_limit }"):format(f.ms_dc) end },
  { cause = "mailserver_size_limit", hop = "mailserver.dovecot",
    fix = function(f) return ("the mail server refuses messages the MX accepts (its size limit is lower): raise Dovecot's lmtp/quota size limit on %s or lower message_size_limit on %s to match; then: runbook run queue-flush --service %s"):format(f.ms, f.mx_pf, f.mx_pf) end },
  { cause = "size_limit_mismatch", hop = "mx.postfix",
    fix = function(f) return { runbook = "postfix-param-set", args = { service = f.mx_pf, name = "message_size_limit", value = tostring(f.size_limit_target or 0) } } end },
  { cause = "delimiter_mismatch", hop = "mailserver.dovecot",
    fix = function(f) return ("recipient_delimiter differs between the hops (%s): set the same value on both Postfix hops and in Dovecot, e.g. runbook run postfix-param-set --service %s --name recipient_delimiter --value %s"):format(f.delimiters_text or "?", f.delimiter_service or f.mx_pf, f.dovecot_delimiter ~= "" and f.dovecot_delimiter or "+") end },
  { cause = "quota_exceeded", hop = "mailserver.dovecot",
    fix = function(f) return ("the mailbox of %s is over quota: raise its quota in the User Management API or have the user clean up"):format(f.addr) end },
  { cause = "delivered_to_junk", hop = "mailserver.dovecot",
    fix = function(f) return f.junk_fix or { runbook = "message-move", args = { addr = f.addr, ["message-id"] = f.junk_message_id or "ID", to = "INBOX" } } end },
  { cause = "disk_full", hop = "mailserver.disk", status = "escalate",
    fix = function(f) return ("free space on %s's mail volume (%s); less than 10%% left is an escalation"):format(f.ms, f.maildir_root) end },
  { cause = "maildir_permissions", hop = "mailserver.maildir",
    fix = function(f) return { runbook = "maildir-fix", args = { domain = f.domain } } end },
  { cause = "queue_stuck", hop = "mx.queue",
    fix = function(f) return { runbook = "queue-flush", args = { service = f.queue_service or f.mx_pf, ["queue-id"] = f.stuck_queue_id } } end },
  { cause = "db_error", hop = "mailserver.db", status = "escalate",
    fix = function() return "the database answers with errors: possible corruption, escalate" end },
  -- The last mail failed and nothing was delivered since, but no check names why.
  { cause = "unexplained_failure", hop = "logs",
    fix = function(f) return ("read the failure above on %s; send a new message to %s and run undelivered again"):format(f.failure_host or "the hop named", f.addr) end },
  -- The last mail failed for a reason the checks of the current state no longer show.
  { cause = "not_reproduced", hop = "logs",
    fix = function(f) return ("the cause seems gone: send a new message to %s (or wait for the queue's retry) and run undelivered again"):format(f.addr) end },
  -- Nothing confirmed, but checks on the path could not run: never "healthy".
  { cause = "incomplete", hop = "logs", status = "escalate",
    fix = function() return "the checks named above could not run (a daemon, port or socket did not answer): check them by hand, then run undelivered again" end },
}

M.RANK = {}
M.BY_NAME = {}
for i, c in ipairs(M.LIST) do
  M.RANK[c.cause] = i
  M.BY_NAME[c.cause] = c
end

-- exists(cause) -> true when the cause is in the table
function M.exists(cause) return M.BY_NAME[cause] ~= nil end

-- hop(cause, f) -> the hop with the inventory's host names ("mx.postfix" -> "ec2.postfix")
function M.hop(spec_hop, f)
  local h = spec_hop or "?"
  h = h:gsub("^mx%.", (f.mx or "mx") .. "."):gsub("^mx%->", (f.mx or "mx") .. "->")
  h = h:gsub("mailserver", f.ms or "mailserver")
  return h
end

-- validate(names, where): raise unless every name is a cause in the table (for runbook check)
function M.validate(names, where)
  for _, c in ipairs(names) do
    if not M.BY_NAME[c] then
      error(("%s names the cause '%s', which is not in the cause table (runbooks/lib/causes.lua)"):format(where, tostring(c)), 0)
    end
  end
end

return M
