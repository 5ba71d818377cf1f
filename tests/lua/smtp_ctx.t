-- smtp_ctx.t: ctx:smtp_probe and ctx:tcp_check_local (lua/runbook/prim/smtp.lua) through the
-- choke point, against a scripted peer and a private dnsmasq on 127.0.0.34. Proves the
-- read/write decision: a probe that stops at or before RCPT is a read; one that sends DATA is a
-- write, does nothing without --apply (the peer receives nothing) and its dry run shows the
-- envelope and headers; with --apply the message sent carries the Message-ID it announced.
local t = require "tap"
local fx = require("netfix").new("smtpctx")
local context = require "runbook.context"
local inventory = require "runbook.inventory"

local JOURNAL = "/tmp/runbook-smtp-ctx-test-" .. require("runbook.core").getpid() .. ".jsonl"
local function body()
  local dport = fx:dnsmasq { "--local=/test/", "--host-record=smtp.example.test,127.0.0.34" }
  local peer = fx:peer("plain")
  local inv = assert(inventory.validate {
    defaults = { timeout = 3, connect_timeout = 2 }, audit = { journal = JOURNAL },   -- applied writes need one
    dns = { server = fx.ADDR, port = dport },
    hosts = { gw = { transport = "local", address = fx.ADDR } },
  })
  local events = {}
  local function new(apply)
    return context.new { inventory = inv, trace = true, apply = apply, yes = apply,
      sinks = { function(ev) events[#events + 1] = ev end } }
  end
  local ctx = new(false)

  -- a read: stop defaults to rcpt
  local r, msg = ctx:smtp_probe { host = "gw", port = peer.port, from = "a@outside.test", rcpt = "x@peer.test" }
  t.ok(r and r.ok and r.last_stage == "rcpt", "default stop is rcpt, and it runs in a dry run " .. tostring(msg))
  local ev = events[#events]
  t.ok(ev.event == "call" and ev.op == "smtp.probe", "a probe up to RCPT is a read call (smtp.probe)")
  t.like(ev.summary or "", "^accepted %(greeting 220, helo 250, mail 250, rcpt x@peer%.test 250%)", "summary line")
  t.like(ev.detail or "", "C: RCPT TO:<x@peer%.test>", "trace detail carries the transcript")
  t.like(ev.detail or "", "S: 220%-peer%.test ESMTP scripted peer\n%s+220 peer%.test", "multi-line replies indented")
  t.unlike(fx.received(peer), "DATA", "no DATA in a read")

  -- host given as a DNS name: resolved through the inventory's DNS server (traced)
  local n = #events
  r = ctx:smtp_probe { host = "smtp.example.test", port = peer.port, stop = "helo" }
  t.ok(r and r.ok, "host by DNS name, resolved with ctx:dig")
  t.is(events[n + 1] and events[n + 1].op, "dns.query", "the name lookup is its own traced dns.query")

  -- a write: dry run
  local before = fx.received(peer)
  local res, dmsg, code = ctx:smtp_probe { host = "gw", port = peer.port, from = "a@outside.test",
    rcpt = "x@peer.test", stop = "data", subject = "probe subject" }
  t.ok(res == nil and code == "dryrun", "stop=data without --apply -> nil, msg, 'dryrun'")
  t.like(dmsg, "would smtp%.send mailbox of x@peer%.test", "dry-run message names the mailbox")
  ev = events[#events]
  t.is(ev.event, "would", "a would-record is emitted")
  t.like(ev.detail, "^SMTP 127%.0%.0%.34:%d+ %(gw%) from=<a@outside%.test> rcpt=<x@peer%.test>\n", "would detail: the envelope")
  t.like(ev.detail, "\nMessage%-ID: <runbook%-probe%." .. ctx.run_id .. "%.%x+@runbook%.test>\n", "would detail: the Message-ID")
  t.like(ev.detail, "\nX%-Runbook%-Probe: " .. ctx.run_id .. "\n", "would detail: X-Runbook-Probe is the run id")
  t.like(ev.detail, "\nSubject: probe subject\n", "would detail: the subject")
  require("runbook.core").sleep(0.1)
  t.is(fx.received(peer), before, "the dry run never connected")

  -- a write: applied
  local actx = new(true)
  res, msg = actx:smtp_probe { host = "gw", port = peer.port, from = "a@outside.test", rcpt = "x@peer.test", stop = "data" }
  t.ok(res and res.ok and res.queued_as == "PEER42", "with --apply the message is sent " .. tostring(msg))
  ev = {}
  for _, e in ipairs(events) do if e.event == "write" then ev = e end end
  t.ok(ev.event == "write" and ev.op == "smtp.send", "it is a write event (smtp.send)")
  t.is(ev.after and ev.after.message_id, res.message_id, "the announced Message-ID is the one sent")
  t.is(res.probe_id, actx.run_id, "probe id defaults to the run id")
  t.like(fx.received(peer), "C Message%-ID: " .. res.message_id:gsub("%p", "%%%0"), "the peer received that Message-ID")
  t.like(ev.detail, "C: DATA", "write detail: the transcript")

  -- tcp_check_local
  r = ctx:tcp_check_local("gw", peer.port)
  t.ok(r and r.ms >= 0, "tcp_check_local to an inventory host")
  t.like(events[#events].summary, "^127%.0%.0%.34:%d+ open", "tcp_check summary")
  local _, _, c2 = ctx:tcp_check_local(fx.ADDR, fx:free_port(), { timeout = 1 })
  t.is(c2, "refused", "tcp_check_local: closed port -> refused")

  -- programming errors
  t.ok(not pcall(ctx.smtp_probe, ctx, { host = "gw", rcpt = "x@peer.test", stpo = "rcpt" }), "unknown option raises")
  t.ok(not pcall(ctx.smtp_probe, ctx, { host = "gw", port = peer.port, rcpt = "a@b.test\r\nDATA" }), "CR/LF in rcpt raises")
  t.ok(not pcall(ctx.tcp_check_local, ctx, "gw", "25"), "a string port raises")
  t.ok(not pcall(ctx.tcp_check_local, ctx, "gw", 25, { tmeout = 1 }), "tcp_check_local: unknown option raises")
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
os.remove(JOURNAL)
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
