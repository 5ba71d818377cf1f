-- smtp_lab.t: runbook.dns and runbook.smtp against the lab's real servers (tests/lab): dnsmasq
-- 127.0.0.53, the MX gateway's Postfix 127.0.0.10:25, Dovecot LMTP 127.0.0.20:2525. A real
-- delivery (250 queued as ID, then the message in the Maildir), Relay access denied for the
-- outside sender, LMTP's per-recipient "SESSIONID Saved", unknown user 550 5.1.1, and the same
-- through ctx with the lab inventory. Fails (never skips) when the lab cannot be brought up.
require("rblab").locked("shared", "smtp lab test")   -- re-runs this file under the lab's test lock
local t = require "tap"
local fx = require("netfix").new("smtplab")
local dns = require "runbook.dns"
local smtp = require "runbook.smtp"
local core = require "runbook.core"

local function wait_for(fn, secs)
  local deadline = core.now() + secs
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.2)
  until core.now() > deadline
  return nil
end

local function grep_maildir(dir, needle)
  local out = fx.sh("grep -rlF -- " .. fx.quote(needle) .. " " .. fx.quote(dir) .. " 2>/dev/null")
  return out ~= "" and out or nil
end

local function body()
  local env, out = fx.lab()
  if not t.ok(env, "lab is up") then t.diag(out) return end
  local user, sender = env.LAB_USER, env.LAB_SENDER
  local domain = user:match("@(.+)$")
  local mx, mxport = env.LAB_EC2_ADDR, tonumber(env.LAB_EC2_SMTP_PORT)

  -- DNS: the lab zone
  local r = dns.query { name = domain, type = "MX", server = env.LAB_DNS_ADDR, port = tonumber(env.LAB_DNS_PORT), timeout = 3 }
  t.is(r and r.answers[1] and r.answers[1].exchange, env.LAB_MX_HOST .. ".", "dig MX " .. domain .. " at the lab's dnsmasq")
  r = dns.query { name = env.LAB_MX_HOST, type = "A", server = env.LAB_DNS_ADDR, port = tonumber(env.LAB_DNS_PORT), timeout = 3 }
  t.is(r and r.answers[1] and r.answers[1].address, mx, "the MX host's A record is the gateway")

  -- SMTP: a real delivery through the MX gateway, from the outside sender's address
  local res, msg = smtp.probe { host = mx, port = mxport, bind = env.LAB_SENDER_ADDR, helo = "outside.test",
    from = sender, rcpt = user, stop = "data", timeout = 10, probe_id = "smtplab" .. core.getpid() }
  t.ok(res and res.ok, "delivery probe accepted by the MX gateway " .. tostring(msg))
  t.is(res and res.stages.greeting.code, 220, "greeting 220")
  t.is(res and res.stages.rcpt[1].code, 250, "RCPT 250")
  t.like(res and res.queued_as or "", "^%w+$", "queued_as parsed from '250 2.0.0 Ok: queued as ID'")
  t.like(res and res.stages.data.text or "", "queued as " .. (res and res.queued_as or "?"), "DATA reply carries the id")
  t.is(res and res["local"], env.LAB_SENDER_ADDR, "the connection came from the outside sender's address")
  if res and res.message_id then
    local found = wait_for(function() return grep_maildir(env.LAB_VMAIL_DIR, res.message_id) end, 60)
    t.ok(found, "the probe's Message-ID arrived in a Maildir under " .. env.LAB_VMAIL_DIR)
    t.like(found or "", "/" .. domain:gsub("%p", "%%%0") .. "/", "in the recipient domain's Maildir")
  else
    t.ok(false, "no message id to look for")
    t.ok(false, "no message id to look for")
  end

  -- Relay access denied: the outside sender to a domain the gateway does not host
  res, msg = smtp.probe { host = mx, port = mxport, bind = env.LAB_SENDER_ADDR, helo = "outside.test",
    from = sender, rcpt = "someone@elsewhere.test", stop = "rcpt", timeout = 10 }
  t.ok(res, "relay probe: the server answered " .. tostring(msg))
  t.is(res and res.stages.rcpt[1].code, 554, "non-hosted domain: 554")
  t.is(res and res.stages.rcpt[1].enhanced, "5.7.1", "enhanced 5.7.1")
  t.like(res and res.stages.rcpt[1].text or "", "Relay access denied", "Relay access denied")
  t.is(res and res.ok, false, "probe ok=false")

  -- LMTP straight to Dovecot
  local lmtp_host, lmtp_port = env.LAB_DELL_ADDR, tonumber(env.LAB_DELL_LMTP_PORT)
  res, msg = smtp.probe { host = lmtp_host, port = lmtp_port, lmtp = true, helo = "mx.example.test",
    from = sender, rcpt = user, stop = "data", timeout = 10, starttls = "never" }
  t.ok(res and res.ok, "LMTP delivery accepted " .. tostring(msg))
  t.like(res and res.transcript[2].text or "", "^LHLO ", "LMTP greets with LHLO")
  t.like(res and res.stages.data.replies[1].text or "", "^250 2%.0%.0 <" .. user:gsub("%p", "%%%0") .. "> %S+ Saved",
    "per-recipient reply '250 2.0.0 <rcpt> SESSIONID Saved'")
  t.ok(res and res.lmtp_session and res.queued_as == res.lmtp_session, "lmtp_session parsed, also as queued_as")
  if res and res.message_id then
    t.ok(wait_for(function() return grep_maildir(env.LAB_VMAIL_DIR, res.message_id) end, 60), "LMTP message is in the Maildir")
  else
    t.ok(false, "no LMTP message id")
  end

  res, msg = smtp.probe { host = lmtp_host, port = lmtp_port, lmtp = true, from = sender,
    rcpt = "nobody-" .. core.getpid() .. "@" .. domain, stop = "rcpt", timeout = 10, starttls = "never" }
  t.is(res and res.stages.rcpt[1].code, 550, "LMTP unknown user: 550 " .. tostring(msg))
  t.is(res and res.stages.rcpt[1].enhanced, "5.1.1", "LMTP unknown user: 5.1.1")

  -- through ctx with an inventory built from the lab's facts (the schema of examples/lab.yaml)
  local inv = assert(require("runbook.inventory").validate {
    dns = { server = env.LAB_DNS_ADDR, port = tonumber(env.LAB_DNS_PORT) },
    hosts = { ec2 = { transport = "ssh", address = mx, port = tonumber(env.LAB_EC2_SSH_PORT),
      user = env.LAB_EC2_SSH_USER, key = env.LAB_SSH_KEY, known_hosts = env.LAB_SSH_KNOWN_HOSTS } },
  })
  local ctx = require("runbook.context").new { inventory = inv }
  local m = ctx:dig(domain, "MX")
  t.is(m and m.answers[1].exchange, env.LAB_MX_HOST .. ".", "ctx:dig with the lab inventory")
  res = ctx:smtp_probe { host = env.LAB_MX_HOST, bind = env.LAB_SENDER_ADDR, from = sender, rcpt = user, helo = "outside.test" }
  t.ok(res and res.ok and res.last_stage == "rcpt", "ctx:smtp_probe by MX name (resolved via the lab DNS): RCPT accepted")
  local _, _, code = ctx:smtp_probe { host = mx, from = sender, rcpt = user, stop = "data" }
  t.is(code, "dryrun", "ctx:smtp_probe stop=data without --apply is a dry run")
  res = ctx:tcp_check_local("ec2", mxport)
  t.ok(res and res.ms, "tcp_check_local to the gateway's port 25 (inventory host)")
  ctx:close()
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
