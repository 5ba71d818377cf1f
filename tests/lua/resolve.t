-- resolve.t: undelivered's resolution chain offline (runbooks/lib/resolve.lua, lib/chain.lua's
-- pure parts) and the parsers of the postmap / doveadm / doveconf wrappers, without the lab:
--   * the keys Postfix tries (full, +tag stripped, @domain catch-all, user@, domain, *);
--   * the tables a hop asks: virtual aliases, canonical maps, transport_maps,
--     relay_recipient_maps, check_recipient_access tables of both restriction lists;
--   * address classes: a domain in two classes is seen, a table class is looked up, a table that
--     could not be asked is undecided (never "not listed");
--   * the chain: identity alias = no change, a catch-all takes the address only when no exact key
--     answers, a +tag address finds its base key, transport_maps overrides relay_transport, an
--     access REJECT refuses, a relay_recipient_maps miss refuses, a map that could not be asked
--     is unknown (never "not found"), a rewritten address's own keys are asked again;
--   * parsers: postmap -q - output and failures, doveadm user/quota/fetch, doveconf sections.
local t = require "tap"

local ROOT = os.getenv("RUNBOOK_ROOT") or "."
package.path = ROOT .. "/runbooks/?.lua;" .. ROOT .. "/lua/?.lua;" .. package.path
local resolve = require "lib.resolve"
local chain = require "lib.chain"
local postfix = require "runbook.prim.postfix"
local dovecot = require "runbook.prim.dovecot"

local function has(list, x) for _, v in ipairs(list) do if v == x then return true end end return false end

-- keys
do
  local k = resolve.keys("Info+Tag@Example.test", "+")
  t.is(k[1], "info+tag@example.test", "keys: the full address first, lower case")
  t.ok(has(k, "info@example.test"), "keys: the +tag-stripped form")
  t.ok(has(k, "@example.test"), "keys: the catch-all key")
  t.ok(has(k, "example.test") and has(k, "info+tag@") and has(k, "info@") and has(k, "*"), "keys: domain, user@ forms and *")
  t.is(resolve.strip("info+tag@example.test", ""), nil, "no delimiter: nothing stripped")
  t.is(resolve.strip("info-x+y@example.test", "+-"), "info@example.test", "the first delimiter character of the local part splits")
  t.is(resolve.strip("+x@example.test", "+"), nil, "a local part that starts with the delimiter is not split")
end

local BASE = {
  mydestination = "", virtual_alias_domains = "", virtual_mailbox_domains = "", relay_domains = "example.test, shop.test",
  virtual_alias_maps = "", canonical_maps = "", recipient_canonical_maps = "", transport_maps = "", relay_recipient_maps = "",
  smtpd_recipient_restrictions = "", smtpd_relay_restrictions = "permit_mynetworks, reject_unauth_destination",
  recipient_delimiter = "+", relay_transport = "lmtp:[127.0.0.20]:2525", virtual_transport = "virtual", local_transport = "local",
  default_transport = "error:outside", message_size_limit = "10240000",
}
local function params(over) local p = {} for k, v in pairs(BASE) do p[k] = v end for k, v in pairs(over or {}) do p[k] = v end return p end
local function answers_for(map_values, keys)
  -- a table as postmap -q - would answer it: every asked key, false when absent
  local a = {}
  for map, vals in pairs(map_values) do
    a[map] = {}
    for _, k in ipairs(keys) do a[map][k] = vals[k] or false end
  end
  return a
end

-- tables
do
  local p = params { virtual_alias_maps = "hash:/etc/postfix/virtual, mysql:/etc/postfix/alias.cf", transport_maps = "hash:/etc/postfix/transport",
                     relay_recipient_maps = "hash:/etc/postfix/relay_recipients", recipient_canonical_maps = "regexp:/etc/postfix/rcpt_canon",
                     smtpd_recipient_restrictions = "check_recipient_access hash:/etc/postfix/recipient_access, permit",
                     smtpd_relay_restrictions = "permit_mynetworks, check_recipient_access pcre:/etc/postfix/relay_access, reject_unauth_destination" }
  local tabs = resolve.tables(p)
  local roles = {}
  for _, x in ipairs(tabs) do roles[x.map] = x.role end
  t.is(roles["hash:/etc/postfix/virtual"], "alias", "tables: virtual_alias_maps")
  t.is(roles["mysql:/etc/postfix/alias.cf"], "alias", "tables: a second alias table (any map type)")
  t.is(roles["hash:/etc/postfix/transport"], "transport", "tables: transport_maps")
  t.is(roles["hash:/etc/postfix/relay_recipients"], "relay_recipient", "tables: relay_recipient_maps")
  t.is(roles["regexp:/etc/postfix/rcpt_canon"], "canonical", "tables: recipient_canonical_maps")
  t.is(roles["hash:/etc/postfix/recipient_access"], "access", "tables: check_recipient_access in smtpd_recipient_restrictions")
  t.is(roles["pcre:/etc/postfix/relay_access"], "access", "tables: check_recipient_access in smtpd_relay_restrictions")
  t.is(#resolve.tables(params()), 0, "tables: the plain lab MX asks no table")
end

-- classes
do
  local p = params { mydestination = "example.test" }
  local found = resolve.classes(p, "example.test", {})
  t.is(#found, 2, "classes: example.test in mydestination and relay_domains")
  t.ok(has(found, "mydestination") and has(found, "relay_domains"), "classes: both named")
  p = params { virtual_alias_domains = "hash:/etc/postfix/virtual" }
  local f2, und = resolve.classes(p, "example.test", {})
  t.is(#f2, 1, "classes: a table class that could not be asked is not counted")
  t.ok(has(und, "virtual_alias_domains"), "classes: ... it is undecided, not 'not listed'")
  local f3 = resolve.classes(p, "example.test", { ["hash:/etc/postfix/virtual"] = { ["example.test"] = "anything" } })
  t.is(#f3, 2, "classes: the domain as a key of the virtual alias table makes it a virtual alias domain too")
end

-- chain
do
  local keys = resolve.keys("info@example.test", "+")
  local ch = resolve.chain(params(), "info@example.test", {})
  t.is(ch.transport, "lmtp:[127.0.0.20]:2525", "chain: a relay domain goes to relay_transport")
  t.is(ch.transport_from, "relay_transport", "chain: and says where the transport came from")
  t.ok(not ch.rewritten and not ch.refused, "chain: nothing rewritten or refused on the plain MX")
  t.like(ch.text, "^info@example%.test %-> lmtp:", "chain: the text")

  local V = "hash:/etc/postfix/virtual"
  local p = params { virtual_alias_maps = V }
  ch = resolve.chain(p, "info@example.test", answers_for({ [V] = { ["@example.test"] = "catchall@example.test" } }, keys))
  t.ok(ch.rewritten and ch.catchall, "chain: a catch-all with no exact key takes the address")
  t.is(ch.final[1], "catchall@example.test", "chain: ... to the catch-all's target")
  t.like(ch.text, "catch%-all", "chain: the text names the catch-all")

  ch = resolve.chain(p, "info@example.test", answers_for({ [V] = { ["@example.test"] = "catchall@example.test", ["info@example.test"] = "info@example.test" } }, keys))
  t.ok(not ch.rewritten, "chain: an identity alias (info -> info) beats the catch-all: no rewrite")

  ch = resolve.chain(p, "info@example.test", answers_for({ [V] = { ["info@example.test"] = "postmaster@example.test" } }, keys))
  t.ok(ch.rewritten and not ch.catchall, "chain: an exact alias rewrites")
  t.is(ch.rewritten_by.key, "info@example.test", "chain: ... and names its key")

  local tkeys = resolve.keys("info+tag@example.test", "+")
  ch = resolve.chain(p, "info+tag@example.test", answers_for({ [V] = { ["info@example.test"] = "info@example.test" } }, tkeys))
  t.ok(not ch.rewritten, "chain: info+tag@ finds the identity alias of its base address")

  ch = resolve.chain(p, "info@example.test", {})
  t.is(#ch.unknown, 1, "chain: a table that could not be asked is unknown")
  t.ok(not ch.rewritten, "chain: ... and is not read as 'no alias'")

  local T = "hash:/etc/postfix/transport"
  p = params { transport_maps = T }
  ch = resolve.chain(p, "info@example.test", answers_for({ [T] = { ["example.test"] = "smtp:[127.0.0.20]:25" } }, keys))
  t.is(ch.transport, "smtp:[127.0.0.20]:25", "chain: a transport_maps entry for the domain overrides relay_transport")
  t.is(ch.transport_from, T, "chain: ... and names the table")
  ch = resolve.chain(p, "info@example.test", answers_for({ [T] = { ["example.test"] = ":[127.0.0.30]:25" } }, keys))
  t.is(ch.transport, "lmtp:[127.0.0.30]:25", "chain: an entry with only a next hop keeps the transport")

  local A = "hash:/etc/postfix/recipient_access"
  p = params { smtpd_recipient_restrictions = "check_recipient_access " .. A }
  ch = resolve.chain(p, "info@example.test", answers_for({ [A] = { ["info@example.test"] = "550 5.7.1 Access denied" } }, keys))
  t.ok(ch.refused, "chain: an access table that answers 5xx refuses the address")
  ch = resolve.chain(p, "info@example.test", answers_for({ [A] = { ["info@example.test"] = "OK" } }, keys))
  t.ok(not ch.refused, "chain: OK in an access table does not refuse")

  local R = "hash:/etc/postfix/relay_recipients"
  p = params { relay_recipient_maps = R }
  ch = resolve.chain(p, "info@example.test", answers_for({ [R] = {} }, keys))
  t.like(ch.refused and ch.refused.text or "", "relay recipient table", "chain: a relay domain address missing from relay_recipient_maps is refused")
  ch = resolve.chain(p, "info@example.test", answers_for({ [R] = { ["@example.test"] = "x" } }, keys))
  t.ok(not ch.refused, "chain: ... and accepted by its @domain entry")

  -- a rewrite into another domain: its keys in the transport table are asked again
  p = params { virtual_alias_maps = V, transport_maps = T }
  ch = resolve.chain(p, "info@example.test", answers_for({ [V] = { ["info@example.test"] = "info@shop.test" }, [T] = {} }, keys))
  t.ok(ch.missing[T] and has(ch.missing[T], "shop.test"), "chain: the rewritten address's domain is a key still to ask")
  local a = answers_for({ [V] = { ["info@example.test"] = "info@shop.test" }, [T] = {} }, keys)
  for _, k in ipairs(ch.missing[T]) do a[T][k] = false end
  ch = resolve.chain(p, "info@example.test", a)
  t.ok(next(ch.missing) == nil and #ch.unknown == 0, "chain: once asked, nothing is missing or unknown")
end

-- pure helpers of lib/chain.lua
t.is(chain.bytes("10240000"), 10240000, "bytes: plain number")
t.is(chain.bytes("64M"), 64 * 1024 * 1024, "bytes: a Dovecot size with a unit")
t.is(chain.bytes("x"), nil, "bytes: not a size")
t.is(chain.sieve_action({ "lmtp(info@example.test)<1><s>: sieve: msgid=<a@b>: stored mail into mailbox 'Junk'" }), "fileinto 'Junk'", "sieve action: fileinto")
t.is(chain.sieve_action({ "lmtp(info@example.test)<1><s>: sieve: msgid=<a@b>: marked message to be discarded if not explicitly delivered (discard action)" }), "discard", "sieve action: discard")
t.is(chain.sieve_action({ "lmtp(info@example.test)<1><s>: msgid=<a@b>: saved mail to INBOX" }), nil, "sieve action: none without sieve")
t.ok(resolve.tls_requires("encrypt") and resolve.tls_requires("verify") and not resolve.tls_requires("may") and not resolve.tls_requires("none"), "tls levels")

-- parsers of the wrappers
do
  local a = postfix.parse_postmap({ status = 0, stdout = "info@example.test\tpostmaster@example.test\n", stderr = "" }, { "info@example.test", "@example.test" }, "x")
  t.is(a["info@example.test"], "postmaster@example.test", "postmap: a found key")
  t.is(a["@example.test"], false, "postmap: an absent key is false (asked, not found)")
  a = postfix.parse_postmap({ status = 1, stdout = "", stderr = "" }, { "k" }, "x")
  t.is(a.k, false, "postmap: exit 1 with nothing found is an answer")
  local n, msg, code = postfix.parse_postmap({ status = 1, stdout = "", stderr = "postmap: fatal: open database /etc/postfix/virtual.db: No such file or directory\n" }, { "k" }, "x")
  t.ok(n == nil and code == "lookup", "postmap: a table that cannot be opened is an error (lookup), never 'not found'")
  t.like(msg or "", "No such file", "postmap: ... with postmap's message")

  local u = dovecot.parse_user("field\tvalue\nuid\tvmail\ngid\tvmail\nhome\t/var/mail/vmail/example.test/info\nquota_rule\t*:bytes=0\n")
  t.is(u.home, "/var/mail/vmail/example.test/info", "doveadm user: home")
  t.is(u.field, nil, "doveadm user: the header row is not a field")
  local q = dovecot.parse_quota("Quota name Type    Value Limit %\nUser quota STORAGE     3     - 0\nUser quota MESSAGE     1     - 0\n")
  t.is(#q, 2, "doveadm quota: both rows")
  t.is(q[1].name, "User quota", "doveadm quota: the name with its blank")
  t.is(q[1].value, 3, "doveadm quota: the value")
  local f = dovecot.parse_fetch("mailbox: Junk\nuid: 7\n\f\nmailbox: INBOX\nuid: 2\n")
  t.is(#f, 2, "doveadm fetch: two copies")
  t.is(f[1].mailbox, "Junk", "doveadm fetch: the folder")
  t.is(f[1].uid, 7, "doveadm fetch: the uid")
  local c = dovecot.parse_doveconf("recipient_delimiter = +\nplugin {\n  quota = count:User quota\n  quota_max_mail_size = 64M\n}\nauth_cache_size = 0\n")
  t.is(c.recipient_delimiter, "+", "doveconf: a setting")
  t.is(c.plugin, "", "doveconf: a section is present")
  t.is(c["plugin/quota_max_mail_size"], "64M", "doveconf: a section's setting as section/name")
  t.is(c.auth_cache_size, "0", "doveconf: a setting after the section")
end

t.done()
