-- runbooks/lib/replies.lua: what Postfix, Dovecot and remote servers answer -> cause codes.
--
-- One row per kind of reply or log line. A row matches when ANY of its `text` strings occurs in
-- the reply (plain, case-insensitive), or its `enhanced` status code is the reply's (e.g.
-- "5.3.4"), or its `code` matches the reply's 3-digit code; `at` limits it to replies given BY
-- the MX ("mx": its own smtpd/trivial-rewrite), BY the next hop ("next": "host X said: ..." or an
-- LMTP/SMTP probe answer at the next hop), or a connection failure seen by the MX ("link").
-- `causes` lists what the reply can mean, most likely LAST: the verdict takes the first one a
-- check of the current state confirms, else the last one (the plain reading of the reply).
-- Rows are tried in order: put the specific before the general. The texts come from public
-- issue threads of Postfix/Dovecot deployments (the research behind the project; row numbers
-- in the comments are its ranked causes) and the lab's captures.
-- A new cause is a row here plus a row in lib/causes.lua; no code changes.
-- Depends on: nothing.
local M = {}

M.ROWS = {
  -- the MX's own answers to the sender (causes.md 11, 1, 15, 17, 12, 22, 5, 4, 27, 8, 3)
  { text = { "relay access denied" }, causes = { "relay_domain_missing" } },
  { text = { "user unknown in virtual alias table" }, at = "mx", causes = { "domain_in_two_classes", "mx_recipient_refused" } },
  { text = { "user unknown in relay recipient table", "unverified address", "recipient address rejected: access denied" },
    at = "mx", causes = { "mx_recipient_refused" } },
  { text = { "message size exceeds fixed limit", "message too large", "exceeds size limit" }, enhanced = "5.3.4",
    causes = { "size_limit" } },
  { text = { "insufficient system storage", "not enough free space in mail queue" }, enhanced = "4.3.1",
    causes = { "storage_insufficient" } },
  { text = { "loops back to myself" }, enhanced = "5.4.6", causes = { "mail_loop" } },
  { text = { "do not list domain", "user unknown in local recipient table", "no local mailboxes" }, at = "mx",
    causes = { "domain_local" } },
  { text = { "must issue a starttls command first", "encryption required" }, enhanced = "5.7.0", at = "mx",
    causes = { "tls_required" } },
  { text = { "tls is required, but was not offered", "server certificate not verified", "certificate verification failed",
             "ssl context initialization failed", "cannot start tls" }, causes = { "relay_tls_failed" } },
  { text = { "blocked using", "dnsbl" }, causes = { "mx_dnsbl_blocked" } },
  { text = { "greylist", "delayed by postgrey", "service currently unavailable" }, causes = { "mx_greylisted" } },
  { text = { "ratelimit", "rate limit" }, causes = { "rate_limited" } },
  { text = { "milter-reject", "spam message rejected", "rejected as spam" }, causes = { "spam_rejected" } },
  { text = { "milter service", "milter ", "content filter", ":10024", ":10025" }, causes = { "content_filter_down" } },
  -- routing on the MX (causes.md 25)
  { text = { "mail transport unavailable", "is unavailable. open database", "is older than source file",
             "unknown mail transport" }, causes = { "transport_unavailable" } },
  { text = { "temporary lookup failure", "search aborted" }, at = "mx", causes = { "mx_lookup_failure" } },
  -- the mail server's answers: size, quota, users, lookups, storage (causes.md 17, 9, 1, 13, 14, 16, 10, 19, 20, 18)
  { text = { "mail size is larger than", "larger than the maximum size" }, at = "next", causes = { "mailserver_size_limit" } },
  { text = { "quota exceeded", "mailbox is full", "over quota", "mailbox full" }, enhanced = "5.2.2",
    causes = { "quota_exceeded" } },
  { text = { "user doesn't exist", "user unknown", "unknown user", "no such user", "mailbox unavailable" }, enhanced = "5.1.1",
    causes = { "plus_tag_unsupported", "address_case_mismatch", "auth_negative_cache", "domain_missing", "user_disabled", "user_missing" } },
  { text = { "temporary lookup failure", "user query failed", "userdb lookup", "query failed", "gone away",
             "too many connections" }, causes = { "db_down", "lookup_failure" } },
  { text = { "permission denied", "missing +x perm", "missing +w perm" }, causes = { "maildir_permissions" } },
  { text = { "no space left on device", "read-only file system", "disk quota exceeded" }, causes = { "disk_full" } },
  { text = { "internal error occurred", "temporary internal error" }, enhanced = "4.2.0",
    causes = { "disk_full", "db_down", "lookup_failure", "maildir_permissions" } },
  { enhanced = "4.3.0", at = "next", causes = { "disk_full", "db_down", "lookup_failure", "maildir_permissions" } },
  { text = { "out of memory", "vsz_limit", "while sending end of data", "while sending message body",
             "message may be sent more than once" }, causes = { "lmtp_crashed" } },
  -- the link and the next hop (causes.md 6, 29, 23)
  { text = { "while receiving the initial server greeting", "timed out while receiving the initial" },
    causes = { "relay_not_greeting" } },
  { text = { "connection refused", "connection timed out", "no route to host", "network is unreachable",
             "operation timed out", "host or domain name not found", "name service error" },
    causes = { "mailserver_postfix_down", "dovecot_down", "relay_unreachable" } },
  -- forwards leaving the system and being refused there (causes.md 26)
  { text = { "5.7.26", "sender is unauthenticated", "spf", "dmarc" }, causes = { "forward_rejected" } },
}

-- causes() -> every cause any row names (runbook check validates them against lib/causes.lua)
function M.causes()
  local out = {}
  for _, r in ipairs(M.ROWS) do for _, c in ipairs(r.causes) do out[#out + 1] = c end end
  return out
end

-- where(reply, own) -> "next" when the text quotes the next hop ("host X said:"), else own
function M.where(reply, own)
  if tostring(reply or ""):lower():find(" said: ", 1, true) then return "next" end
  return own
end

-- classify(reply, at) -> row | nil. reply: the text (code, enhanced code, words); at: "mx",
-- "next", "link", "mailserver" or nil (any).
function M.classify(reply, at)
  local r = tostring(reply or ""):lower()
  if r == "" then return nil end
  local enhanced = r:match("[245]%.%d%d?%d?%.%d%d?%d?")
  for _, row in ipairs(M.ROWS) do
    if row.at == nil or row.at == at or (row.at == "next" and at == "mailserver") then
      local hit = row.enhanced ~= nil and enhanced == row.enhanced
      for _, s in ipairs(row.text or {}) do
        if hit then break end
        if r:find(s, 1, true) then hit = true end
      end
      if hit then return row end
    end
  end
  return nil
end

return M
