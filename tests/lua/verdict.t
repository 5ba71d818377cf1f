-- verdict.t: undelivered's verdict function (runbooks/lib/verdict.lua) offline, without the lab.
--   * on recorded check results of real lab runs (tests/fixtures/undelivered/*.json, made by
--     record.sh there): every fault, stall and pair gives its status, cause and hop, and no run
--     with a fault active is healthy;
--   * hand-made edge cases: failure then later success = healthy; success then later failure =
--     problem; an unknown check on the path = never healthy; a stall is never read as "no";
--   * every cause of lib/causes.lua can be the verdict, in path order; every reply row classifies
--     the texts causes.md quotes for it;
--   * `runbook check` refuses a check or reply row that names a cause not in the cause table.
local t = require "tap"
local json = require "runbook.json"
local exec = require "runbook.exec"
local core = require "runbook.core"

local ROOT = os.getenv("RUNBOOK_ROOT") or "."
local RB = os.getenv("RUNBOOK") or (ROOT .. "/runbook")
package.path = ROOT .. "/runbooks/?.lua;" .. package.path
local verdict = require "lib.verdict"
local causes = require "lib.causes"
local replies = require "lib.replies"
local FIX = ROOT .. "/tests/fixtures/undelivered/"

-- expected verdict per recorded case (what the fault IS, not what the run said)
local EXPECT = {
  healthy = { status = "healthy" },
  -- the seed alias abuse@ -> postmaster@ (no users row of its own): the alias is the cause, never
  -- user_missing (creating a mailbox would change nothing: Postfix rewrites first); the fix
  -- follows the target
  ["alias-only"] = { "problem", "delivered_elsewhere", "dell.alias", fix = "runbook run undelivered --addr postmaster@example.test" },
  ["relay-domain-missing"] = { "problem", "relay_domain_missing", "ec2.postfix" },
  ["relay-transport-wrong"] = { "problem", "relay_transport_wrong", "ec2.postfix" },
  ["mx-missing"] = { "problem", "mx_missing", "dns" },
  ["mx-wrong"] = { "problem", "mx_wrong", "dns" },
  ["mx-port-closed"] = { "problem", "mx_unreachable", "ec2.smtp" },
  ["dell-unreachable"] = { "problem", "relay_unreachable", "ec2->dell" },
  ["dovecot-down"] = { "problem", "dovecot_down", "dell.dovecot" },
  ["maildir-permissions"] = { "problem", "maildir_permissions", "dell.maildir" },
  ["user-missing"] = { "problem", "user_missing", "dell.db" },
  ["user-disabled"] = { "problem", "user_disabled", "dell.db" },
  ["domain-missing"] = { "problem", "domain_missing", "dell.db" },
  ["quota-exceeded"] = { "problem", "quota_exceeded", "dell.dovecot" },
  ["queue-stuck"] = { "problem", "queue_stuck", "ec2.queue" },
  ["db-down"] = { "problem", "db_down", "dell.db" },
  ["disk-almost-full"] = { "escalate", "disk_full", "dell.disk" },
  ["relay-domain-missing+dovecot-down"] = { "problem", "relay_domain_missing", "ec2.postfix", also = "dovecot_down" },
  ["user-disabled+maildir-permissions"] = { "problem", "user_disabled", "dell.db", also = "maildir_permissions" },
  ["mx-port-closed+db-down"] = { "problem", "mx_unreachable", "ec2.smtp", also = "db_down" },
  -- kinds outside the original list
  ["mx-recipient-refused"] = { "problem", "mx_recipient_refused", "ec2.postfix" },
  ["alias-rewrite"] = { "problem", "address_rewritten", "ec2.postfix" },
  ["size-limit"] = { "problem", "mailserver_size_limit", "dell.dovecot" },
  ["mail-loop"] = { "problem", "mail_loop", "ec2.postfix" },
  ["tls-required"] = { "problem", "relay_tls_failed", "ec2->dell" },
  ["storage-insufficient"] = { "problem", "storage_insufficient", "ec2.queue" },
  ["transport-unavailable"] = { "problem", "transport_unavailable", "ec2.postfix" },
  ["lookup-failure"] = { "problem", "mx_lookup_failure", "ec2.postfix" },
  ["domain-local"] = { "problem", "domain_local", "ec2.postfix" },
  -- every part answers, yet the mail goes somewhere else (issue 11): the chain, Dovecot's view,
  -- the pair checks
  catchall = { "problem", "delivered_elsewhere", "dell.alias" },
  ["alias-elsewhere"] = { "problem", "delivered_elsewhere", "dell.alias" },
  ["negative-cache"] = { "problem", "auth_negative_cache", "dell.dovecot" },
  ["address-case"] = { "problem", "address_case_mismatch", "dell.db" },
  ["size-mismatch"] = { "problem", "size_limit_mismatch", "ec2.postfix" },
  ["domain-two-classes"] = { "problem", "domain_in_two_classes", "ec2.postfix" },
  ["plus-tag"] = { "problem", "plus_tag_unsupported", "dell.dovecot", also = "delimiter_mismatch" },
  ["sieve-junk"] = { "problem", "delivered_to_junk", "dell.dovecot" },
  -- stalls: the right unknown checks, never healthy, never "no"; recorded runs ended within 20 s
  ["mx-stall"] = { "problem", "mx_not_greeting", "ec2.smtp", within = 20 },
  ["lmtp-stall"] = { "problem", "relay_not_greeting", "ec2->dell", within = 20 },
  ["db-stall"] = { "escalate", "incomplete", "dell.db", within = 20, unknown = { "db", "next.rcpt" } },
  ["dns-stall"] = { "escalate", "incomplete", "dns", within = 20, unknown = { "dns" } },
  ["docker-stall-ec2"] = { "escalate", "incomplete", "ec2.docker", within = 20, unknown = { "containers", "mx.config", "logs", "queues" } },
  ["docker-stall-dell"] = { "escalate", "incomplete", "dell.docker", within = 20, unknown = { "containers", "maildir", "disk", "logs" } },
  -- pairs
  ["mx-recipient-refused+quota-exceeded"] = { "problem", "mx_recipient_refused", "ec2.postfix", also = "quota_exceeded" },
  ["dns-stall+user-missing"] = { "problem", "user_missing", "dell.db", within = 20, unknown = { "dns" } },
  ["tls-required+user-disabled"] = { "problem", "relay_tls_failed", "ec2->dell", also = "user_disabled" },
  ["lmtp-stall+relay-domain-missing"] = { "problem", "relay_domain_missing", "ec2.postfix", within = 20, also = "relay_not_greeting" },
}

local function load_fixture(name)
  local text = exec.readfile(FIX .. name .. ".json")
  if not text then return nil end
  return json.decode(text)
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local o = {}
  for k, x in pairs(v) do o[k] = copy(x) end
  return o
end

-- JSON null decodes to a sentinel; the verdict sees plain Lua
local function unnull(v)
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do
    if type(x) == "userdata" then v[k] = nil else unnull(x) end
  end
  return v
end

local function decide(rec) return verdict.decide(unnull(copy { facts = rec.facts, checks = rec.checks, history = rec.history, queued = rec.queued })) end

-- ---------------------------------------------------------------- recorded lab runs
local listed = exec.run({ "ls", FIX }, { timeout = 5 })
local present = {}
for f in (listed and listed.stdout or ""):gmatch("([^\n]+)%.json") do present[f] = true end
for name in pairs(present) do
  t.ok(EXPECT[name] ~= nil, "fixture " .. name .. " has an expected verdict in verdict.t")
end
local names = {}
for name in pairs(EXPECT) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local want = EXPECT[name]
  local rec = load_fixture(name)
  if not t.ok(rec ~= nil, name .. ": recorded fixture present") then goto continue end
  local v = decide(rec)
  local status, cause, hop = want.status or want[1], want[2], want[3]
  t.is(v.status, status, name .. ": status")
  t.is(v.cause, cause, name .. ": cause")
  if hop then t.is(v.hop, hop, name .. ": hop") end
  if name ~= "healthy" then t.isnt(v.status, "healthy", name .. ": a fault is active: never healthy") end
  if cause then
    t.ok(v.fix ~= nil, name .. ": names a fix")
    t.ok(type(v.evidence) == "table" and #v.evidence > 0, name .. ": carries evidence")
  end
  if want.also then t.ok((function() for _, c in ipairs(v.also or {}) do if c == want.also then return true end end end)(),
    name .. ": the second fault is found too: " .. want.also) end
  for _, u in ipairs(want.unknown or {}) do
    t.ok((function() for _, c in ipairs(v.unknown or {}) do if c == u then return true end end end)(),
      name .. ": names the check that could not run: " .. u)
  end
  if want.fix then
    local fx = type(v.fix) == "table" and ("runbook run %s --addr %s"):format(v.fix.runbook, tostring(v.fix.args and v.fix.args.addr)) or tostring(v.fix)
    t.is(fx, want.fix, name .. ": the fix")
    t.is(#(v.also or {}), 0, name .. ": nothing else is called a cause (" .. table.concat(v.also or {}, ",") .. ")")
  end
  if want.within then t.ok((rec.seconds or 99) <= want.within, ("%s: the run ended within %d s (%.1f s)"):format(name, want.within, rec.seconds or -1)) end
  ::continue::
end

-- ---------------------------------------------------------------- hand-made edge cases
local base = load_fixture("healthy")
if not base then
  t.ok(false, "the healthy fixture is needed for the edge cases")
  t.done()
end
unnull(base)
local F = base.facts

local function with(mod)
  local rec = copy(base)
  mod(rec)
  return verdict.decide(rec)
end

local function entry(time, delivered, reply, extra)
  local e = { time = time, host = "ec2", at = replies.where(reply, "mx"), delivered = delivered,
              status = delivered and "delivered" or "bounced", reply = reply, line = "line " .. time, hop = "ec2.postfix" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local NOW = 1800000000
local v = with(function(r) r.history = { entry(NOW - 60, false, "host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <x> User doesn't exist"), entry(NOW, true, "250 2.0.0 Saved") } end)
t.is(v.status, "healthy", "failure then a later success: healthy")

v = with(function(r) for _, c in ipairs(r.checks) do if c.name == "mx.rcpt" then c.status = "skipped" end end end)
t.is(v.status, "healthy", "a check the operator turned off (--no-probe) does not block healthy")
t.like(v.message, "not run: mx%.rcpt", "but the healthy message names it as not run")
v = with(function() end)
t.unlike(v.message, "not run:", "every check ran: no 'not run' (control)")

v = with(function(r) r.history = { entry(NOW - 60, true, "250 2.0.0 Saved"), entry(NOW, false, "451 4.7.0 something nobody knows") } end)
t.is(v.status, "problem", "success then a later failure: problem")
t.is(v.cause, "unexplained_failure", "a reply no row knows: unexplained_failure")
t.is(v.hop, "ec2.postfix", "unexplained_failure names the hop where it happened")
t.like(v.evidence and v.evidence[1] and v.evidence[1].text or "", "something nobody knows", "unexplained_failure carries the exact reply")
t.like(v.evidence and v.evidence[1] and v.evidence[1].text or "", "line " .. NOW, "and the log line")
t.ok(v.evidence and v.evidence[1] and v.evidence[1].time, "and the time")

v = with(function(r) r.history = { entry(NOW - 60, true, "250 2.0.0 Saved"), entry(NOW, false, "552 5.3.4 Message size exceeds fixed limit") } end)
t.is(v.cause, "size_limit", "a classified reply no check can see now is believed: size_limit")

v = with(function(r) r.history = { entry(NOW, false, "host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <x> User doesn't exist: x (in reply to RCPT TO command)") } end)
t.is(v.cause, "not_reproduced", "a reply the passing checks deny now (db, next.rcpt): not_reproduced, still a problem")
t.is(v.status, "problem", "not_reproduced is a problem, not healthy")

v = with(function(r) r.history = { entry(NOW, true, "250 2.0.0 Saved", { rewritten_to = "catchall@example.test" }) } end)
t.is(v.cause, "address_rewritten", "delivered to another address: address_rewritten")
v = with(function(r) r.history = { entry(NOW, true, "250 2.0.0 Saved", { rewritten_to = "catchall@example.test", host = "dell", hop = "dell.postfix" }) } end)
t.is(v.cause, "delivered_elsewhere", "rewritten on the mail server (its alias or catch-all): delivered_elsewhere")
t.is(v.status, "problem", "delivered_elsewhere is a problem, never healthy")
t.is(v.hop, "dell.alias", "delivered_elsewhere's hop")
t.like(type(v.fix) == "string" and v.fix or "", "catchall@example%.test", "its fix names where the mail went")

-- issue 11: the chain's checks. Their fails are causes like any other; the saved mail's folder
-- makes a delivery a problem; an unknown lookup is never "not found".
local function check_named(r, name)
  for _, c in ipairs(r.checks) do if c.name == name then return c end end
  local c = { name = name, hop = "logs", status = "ok", confirms = {}, fails = {}, why = "", on_path = true }
  r.checks[#r.checks + 1] = c
  return c
end
v = with(function(r)
  r.history = { entry(NOW, true, "250 2.0.0 Saved") }
  local c = check_named(r, "saved")
  c.status = "fail"
  c.fails = { { cause = "delivered_to_junk", message = "saved into 'Junk' by sieve", evidence = { { host = "dell", source = "dovecot log", text = "stored mail into mailbox 'Junk'" } } } }
  r.facts.junk_message_id = "<m1@outside.test>"
end)
t.is(v.status, "problem", "a delivery into Junk is a problem, not healthy, although the log says saved")
t.is(v.cause, "delivered_to_junk", "delivered_to_junk is the verdict")
t.is(v.hop, "dell.dovecot", "delivered_to_junk's hop")
t.is(type(v.fix) == "table" and v.fix.runbook, "message-move", "delivered_to_junk's fix is message-move")
t.is(type(v.fix) == "table" and v.fix.args["message-id"], "<m1@outside.test>", "... of that message")
v = with(function(r)
  local c = check_named(r, "mx.resolve")
  c.status = "unknown"; c.why = "postmap -q - hash:/etc/postfix/virtual: timeout"
end)
t.is(v.status, "escalate", "a table lookup that could not run: escalate, never healthy")
t.is(v.cause, "incomplete", "... incomplete, never 'no alias'")
v = with(function(r)
  r.history = { entry(NOW - 60, true, "250 2.0.0 Saved"), entry(NOW, false, "host 127.0.0.20[127.0.0.20] said: 451 4.2.0 <a@d> Mail size is larger than the maximum size allowed by server configuration") }
  local c = check_named(r, "pair")
  c.status = "fail"
  c.fails = { { cause = "size_limit_mismatch", message = "10240000 > 65536", evidence = { { text = "x" } } } }
end)
t.is(v.cause, "mailserver_size_limit", "a size refusal seen in the logs comes before the mismatch that explains it")
t.ok((function() for _, c in ipairs(v.also or {}) do if c == "size_limit_mismatch" then return true end end end)(), "... and the mismatch is named too")
v = with(function(r)
  local c = check_named(r, "pair")
  c.status = "fail"
  c.fails = { { cause = "delimiter_mismatch", message = "+ vs -", evidence = { { text = "x" } } } }
end)
t.is(v.status, "problem", "a mismatch between the hops is a finding before mail fails: problem, not healthy")

-- every check, one at a time, could not run: never healthy, named, and never read as a cause
for i, c in ipairs(base.checks) do
  v = with(function(r) r.checks[i].status = "unknown"; r.checks[i].why = "timeout (stalled)" end)
  t.is(v.status, "escalate", ("check %s unknown: escalate, not healthy"):format(c.name))
  t.is(v.cause, "incomplete", ("check %s unknown: cause incomplete"):format(c.name))
  t.like(v.message, c.name:gsub("%p", "%%%0") .. " %(timeout", ("check %s unknown: the verdict names it and why"):format(c.name))
end

-- an unknown check beside a confirmed cause: the cause wins, the unknown is still named
v = with(function(r)
  r.checks[1].status = "unknown"; r.checks[1].why = "db did not answer"
  r.checks[5].status = "fail"; r.checks[5].fails = { { cause = "mx_unreachable", message = "port 25 refused", evidence = { { host = "ec2", text = "refused" } } } }
end)
t.is(v.cause, "mx_unreachable", "a confirmed cause beside an unknown check is the verdict")
t.like(v.message, "could not check: db", "and the unknown check is named")

-- mail waiting while every check passes: queue_stuck; with a check unknown: not claimed
v = with(function(r) r.queued = { { service = "ec2/postfix", host = "ec2", queue_id = "ABC123", age = 300, reason = "connect refused" } } end)
t.is(v.cause, "queue_stuck", "queued mail while every check passes: queue_stuck")
t.like(v.fix and v.fix.args and v.fix.args["queue-id"] or "", "ABC123", "queue_stuck's fix names the queue id")
v = with(function(r)
  r.queued = { { service = "ec2/postfix", host = "ec2", queue_id = "ABC123", age = 300 } }
  r.checks[8].status = "unknown"; r.checks[8].why = "timeout"
end)
t.is(v.cause, "incomplete", "queued mail with a check unknown: incomplete, not queue_stuck")

-- a live refusal is resolved against the other checks (candidates)
v = with(function(r)
  r.checks[9].status = "fail"
  r.checks[9].fails = { { candidates = replies.classify("451 4.3.0 Temporary internal error", "next").causes, message = "451", evidence = {} } }
  r.checks[10].status = "fail"
  r.checks[10].fails = { { cause = "maildir_permissions", message = "owned by root", evidence = {} } }
end)
t.is(v.cause, "maildir_permissions", "a 4.3.0 refusal at RCPT goes to the cause another check confirms")

-- every cause can be the verdict, and the one first along the path wins a pair
local special = { unexplained_failure = true, not_reproduced = true, incomplete = true }
for i, c in ipairs(causes.LIST) do
  if not special[c.cause] then
    v = with(function(r) r.checks[1].status = "fail"; r.checks[1].fails = { { cause = c.cause, message = "m " .. c.cause, evidence = { { text = "e" } } } } end)
    t.is(v.cause, c.cause, "cause " .. c.cause .. " can be the verdict")
    t.is(v.status, c.status or "problem", "cause " .. c.cause .. ": status")
    t.ok(v.fix ~= nil and v.hop ~= nil, "cause " .. c.cause .. ": hop and fix")
    local nxt = causes.LIST[i + 1]
    if nxt and not special[nxt.cause] then
      v = with(function(r)
        r.checks[1].status = "fail"
        r.checks[1].fails = { { cause = nxt.cause, message = "b", evidence = {} }, { cause = c.cause, message = "a", evidence = {} } }
      end)
      t.is(v.cause, c.cause, ("pair %s + %s: the first along the path"):format(c.cause, nxt.cause))
    end
  end
end

-- the reply table: texts operators see (the research on real causes, lab captures) -> causes
local SAMPLES = {
  { "554 5.7.1 <a@d>: Relay access denied", "mx", "relay_domain_missing" },
  { "550 5.1.1 <a@d>: Recipient address rejected: User unknown in relay recipient table", "mx", "mx_recipient_refused" },
  { "450 4.1.1 <a@d>: Recipient address rejected: unverified address: host said: 550 User doesn't exist", "mx", "mx_recipient_refused" },
  { "552 5.3.4 Message size exceeds fixed limit", "mx", "size_limit" },
  { "452 4.3.1 Insufficient system storage", "mx", "storage_insufficient" },
  { "mail for example.test loops back to myself", "mx", "mail_loop" },
  { "550 5.1.1 <a@d>: Recipient address rejected: User unknown in local recipient table", "mx", "domain_local" },
  { "status=bounced (5.1.1 no local mailboxes on this host)", "mx", "domain_local" },
  { "host 127.0.0.20[127.0.0.20] said: 451 4.2.0 <a@d> Mail size is larger than the maximum size allowed by server configuration", "next", "mailserver_size_limit" },
  { "530 5.7.0 Must issue a STARTTLS command first", "mx", "tls_required" },
  { "TLS is required, but was not offered by host 127.0.0.20[127.0.0.20]", "mx", "relay_tls_failed" },
  { "554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org", "mx", "mx_dnsbl_blocked" },
  { "450 4.2.0 <a@d>: Recipient address rejected: Greylisted", "mx", "mx_greylisted" },
  { "451 4.7.1 Ratelimit \"mailcow\" exceeded", "mx", "rate_limited" },
  { "milter-reject: END-OF-MESSAGE from x: 5.7.1 Spam message rejected", "mx", "spam_rejected" },
  { "connect to 127.0.0.1[127.0.0.1]:10024: Connection refused", "mx", "content_filter_down" },
  { "mail transport unavailable", "mx", "transport_unavailable" },
  { "451 4.3.0 <a@d>: Temporary lookup failure", "mx", "mx_lookup_failure" },
  { "host 127.0.0.20[127.0.0.20] said: 552 5.2.2 <a@d> Quota exceeded (mailbox for user is full)", "next", "quota_exceeded" },
  { "host 127.0.0.20[127.0.0.20] said: 550 5.1.1 <a@d> User doesn't exist: a@d", "next", "user_missing" },
  { "host 127.0.0.20[127.0.0.20] said: 451 4.3.0 <a@d> Temporary lookup failure", "next", "db_down" },
  { "chdir(/var/mail/x/) failed: Permission denied (euid=10001 missing +x perm)", "mailserver", "maildir_permissions" },
  { "No space left on device", "mailserver", "disk_full" },
  { "host 127.0.0.20[127.0.0.20] said: 451 4.2.0 <a@d> Internal error occurred", "next", "maildir_permissions" },
  { "lost connection with 127.0.0.20[127.0.0.20] while sending end of data -- message may be sent more than once", "mx", "lmtp_crashed" },
  { "conversation with 127.0.0.20[127.0.0.20] timed out while receiving the initial server greeting", "mx", "relay_not_greeting" },
  { "connect to 127.0.0.20[127.0.0.20]:2525: Connection refused", "mx", "relay_unreachable" },
  { "connect to 127.0.0.20[127.0.0.20]:2525: No route to host", "mx", "relay_unreachable" },
  { "host gmail-smtp-in said: 550-5.7.26 This mail has been blocked because the sender is unauthenticated", "next", "forward_rejected" },
}
for _, s in ipairs(SAMPLES) do
  local row = replies.classify(s[1], s[2])
  local ok = false
  for _, c in ipairs(row and row.causes or {}) do if c == s[3] then ok = true end end
  t.ok(ok, ("reply %q -> %s"):format(s[1]:sub(1, 60), s[3]))
end
t.is(replies.classify("250 2.0.0 Ok", "mx"), nil, "a reply no row knows is not classified")

-- every cause a reply row names is in the cause table
for _, c in ipairs(replies.causes()) do t.ok(causes.exists(c), "reply row cause " .. c .. " is in the cause table") end

-- `runbook check` refuses a check or a reply row naming a cause not in the table
do
  local dir = "/tmp/runbook-verdict-" .. core.getpid()
  exec.run({ "mkdir", "-p", dir .. "/lib" }, { timeout = 5 })
  for _, l in ipairs { "causes", "replies", "verdict", "chain", "resolve" } do
    exec.writefile(dir .. "/lib/" .. l .. ".lua", assert(exec.readfile(ROOT .. "/runbooks/lib/" .. l .. ".lua")), tonumber("644", 8))
  end
  local src = assert(exec.readfile(ROOT .. "/runbooks/undelivered.lua"))
  exec.writefile(dir .. "/undelivered.lua", src, tonumber("644", 8))
  local r = exec.run({ RB, "check", dir .. "/undelivered.lua" }, { timeout = 30 })
  t.is(r and r.status, 0, "runbook check accepts the shipped runbook (control)")
  local bad, n = src:gsub('confirms = { "maildir_permissions" }', 'confirms = { "maildir_permisions" }')
  exec.writefile(dir .. "/undelivered.lua", bad, tonumber("644", 8))
  r = exec.run({ RB, "check", dir .. "/undelivered.lua" }, { timeout = 30 })
  t.ok(n == 1 and r and r.status ~= 0, "runbook check refuses a check confirming an unknown cause")
  t.like(r and r.stdout or "", "maildir_permisions", "and names it")
  exec.writefile(dir .. "/undelivered.lua", src, tonumber("644", 8))
  local rsrc = assert(exec.readfile(ROOT .. "/runbooks/lib/replies.lua"))
  local rbad, n2 = rsrc:gsub('causes = { "size_limit" }', 'causes = { "size_limt" }')
  exec.writefile(dir .. "/lib/replies.lua", rbad, tonumber("644", 8))
  r = exec.run({ RB, "check", dir .. "/undelivered.lua" }, { timeout = 30 })
  t.ok(n2 == 1 and r and r.status ~= 0, "runbook check refuses a reply row naming an unknown cause")
  exec.run({ "rm", "-rf", dir }, { timeout = 5 })
end

t.done()
