-- smtp.t: runbook.smtp and runbook.net (src/lsmtp.c, smtp_conn.c, smtp_msg.c, lnet.c) against
-- private scripted peers on 127.0.0.34 (tests/lib/smtp_peer.py) for what a healthy Postfix will
-- not do: a server that never answers, garbage, a closed connection, STARTTLS offered / refused /
-- not offered / injected, certificate verification, a stall at DATA; plus the hostile-input
-- checks, proven by what the peer received (nothing). The real dialogues are in smtp_lab.t.
local t = require "tap"
local fx = require("netfix").new("smtp")
local smtp = require "runbook.smtp"
local net = require "runbook.net"
local core = require "runbook.core"
local S = fx.ADDR

local function probe(peer, o)
  o.host, o.port = S, peer.port
  o.timeout = o.timeout or 3
  return smtp.probe(o)
end

local function body()
  -- a full dialogue with a plain ESMTP peer
  local plain = fx:peer("plain")
  local r, msg, code = probe(plain, { from = "probe@outside.test", rcpt = { "a@peer.test", "unknown@peer.test" },
    stop = "data", message = "line one\n.starts with a dot\n", probe_id = "run42" })
  t.ok(r, "plain peer: dialogue completes " .. tostring(msg))
  t.is(r.stages.greeting.code, 220, "multi-line greeting read as one reply")
  t.like(r.stages.greeting.text, "^220%-peer.test.*\n220 peer.test second", "greeting text keeps both lines")
  t.is(r.stages.rcpt[1].code, 250, "first RCPT accepted")
  t.is(r.stages.rcpt[2].code, 550, "second RCPT refused")
  t.is(r.stages.rcpt[2].enhanced, "5.1.1", "enhanced status code parsed")
  t.is(r.stages.rcpt[2].ok, false, "refused RCPT has ok=false")
  t.is(r.queued_as, "PEER42", "queued_as parsed from '250 2.0.0 Ok: queued as PEER42'")
  t.is(r.ok, false, "ok=false when a recipient was refused")
  t.is(r.probe_id, "run42", "probe_id passed through")
  t.like(r.message_id, "^<runbook%-probe%.run42%.%x+@runbook%.test>$", "generated Message-ID")
  t.is(r.tls, false, "no TLS without STARTTLS")
  local seen = fx.received(plain)
  t.like(seen, "C %.%.starts with a dot\n", "DATA is dot-stuffed on the wire")
  t.like(seen, "C X%-Runbook%-Probe: run42\n", "X-Runbook-Probe header sent")
  t.like(seen, "C Message%-ID: " .. r.message_id:gsub("%p", "%%%0") .. "\n", "the returned Message-ID is the one sent")
  t.like(seen, "C QUIT\n$", "QUIT at the end")
  local dirs, times_ok, last = {}, true, -1
  for _, e in ipairs(r.transcript) do
    dirs[#dirs + 1] = e.dir
    if e.t < last then times_ok = false end
    last = e.t
  end
  t.is(table.concat(dirs), "SCSCSCSCSCSCSCS", "transcript alternates server/client")
  t.ok(times_ok, "transcript times never go back")

  -- stop stages: nothing past the stop is sent
  local p2 = fx:peer("plain")
  r = probe(p2, { from = "a@outside.test", rcpt = "x@peer.test", stop = "rcpt" })
  t.ok(r and r.ok and r.last_stage == "rcpt", "stop=rcpt: ok, last stage rcpt")
  t.unlike(fx.received(p2), "DATA", "stop=rcpt: DATA never sent")
  r = probe(p2, { stop = "connect" })
  t.ok(r and r.stages.greeting and r.stages.helo == nil, "stop=connect: greeting only")

  -- hostile input raises before any connection: the peer never sees a byte
  local p3 = fx:peer("plain")
  local ok, e = pcall(probe, p3, { from = "a@outside.test", rcpt = { "ok@peer.test", "x@peer.test>\r\nRCPT TO:<evil@elsewhere.test" } })
  t.ok(not ok and tostring(e):find("injection"), "CR/LF in a recipient raises")
  ok = pcall(probe, p3, { from = "a@outside.test\nDATA", rcpt = "x@peer.test" })
  t.ok(not ok, "LF in the sender raises")
  ok = pcall(probe, p3, { helo = "x.test\r\nMAIL FROM:<a@b.test>", rcpt = "x@peer.test", stop = "helo" })
  t.ok(not ok, "CR/LF in helo raises")
  ok = pcall(probe, p3, { rcpt = "x@peer.test", subject = "hi\r\nBcc: evil@elsewhere.test" })
  t.ok(not ok, "CR/LF in a header value raises")
  ok = pcall(probe, p3, { rcpt = "x\0@peer.test" })
  t.ok(not ok, "NUL in a recipient raises")
  ok, e = pcall(probe, p3, { rcpt = "x@peer.test", stpo = "rcpt" })
  t.ok(not ok and tostring(e):find("unknown option 'stpo'"), "unknown option raises")
  ok = pcall(probe, p3, { stop = "data" })
  t.ok(not ok, "stop=data without rcpt raises")
  ok = pcall(smtp.probe, { host = "mx.example.test", port = 25 })
  t.ok(not ok, "a host name (not an IP) raises: C never resolves names")
  core.sleep(0.2)
  t.is(fx.received(p3), "", "the peer saw no connection from any hostile call")

  -- connection-level failures
  local silent = fx:peer("silent")
  local t0 = core.now()
  r, msg, code = probe(silent, { timeout = 0.5, stop = "connect" })
  t.is(code, "timeout", "a server that accepts and never answers -> 'timeout'")
  t.ok(core.now() - t0 < 1.5, "and the timeout is kept")
  local garbage = fx:peer("garbage")
  r, msg, code = probe(garbage, { stop = "connect" })
  t.is(code, "protocol", "garbage greeting -> 'protocol'")
  t.like(msg, "not an SMTP reply", "message says why")
  local closer = fx:peer("close")
  r, msg, code = probe(closer, { stop = "connect" })
  t.is(code, "protocol", "connection closed at once -> 'protocol'")
  local free = fx:free_port()
  r, msg, code = smtp.probe { host = S, port = free, stop = "connect", timeout = 2 }
  t.is(code, "refused", "nobody listening -> 'refused'")

  -- a stall mid-dialogue: partial transcript comes back as the 4th value
  local stall = fx:peer("stall")
  local partial
  r, msg, code, partial = probe(stall, { timeout = 0.5, from = "a@outside.test", rcpt = "x@peer.test", stop = "data" })
  t.is(code, "timeout", "server silent after DATA -> 'timeout'")
  t.ok(partial and partial.stages.rcpt and partial.stages.rcpt[1].code == 250, "partial result keeps the stages so far")
  t.is(partial and partial.transcript[#partial.transcript].text, "DATA", "last transcript line is the unanswered DATA")

  -- STARTTLS
  local cert, key = fx:cert()
  local tlspeer = fx:peer("tls", cert, key)
  r, msg = probe(tlspeer, { from = "a@outside.test", rcpt = "x@peer.test", stop = "rcpt" })
  t.ok(r and r.tls == true, "starttls=auto: TLS when offered " .. tostring(msg))
  t.ok(r and r.stages.starttls.version:find("^TLS"), "TLS version reported")
  t.like(r and r.stages.starttls.peer_subject or "", "CN ?= ?peer.test", "peer certificate subject reported")
  t.like(fx.received(tlspeer), "TLS on\nC EHLO runbook.test\nC MAIL", "EHLO again inside TLS, then MAIL")
  r, msg, code = probe(tlspeer, { stop = "helo", tls_verify = true })
  t.is(code, "tls", "tls_verify against the system store: self-signed certificate -> 'tls'")
  t.like(msg, "certificate", "message names the certificate problem")
  r = probe(tlspeer, { stop = "helo", tls_verify = true, tls_ca = cert })
  t.ok(r and r.tls and r.stages.starttls.verified, "tls_verify with the right CA and IP SAN succeeds")
  r, msg, code = probe(tlspeer, { stop = "helo", tls_verify = true, tls_ca = cert, tls_name = "other.test" })
  t.is(code, "tls", "tls_verify with the wrong name -> 'tls'")
  r = probe(tlspeer, { stop = "helo", starttls = "never" })
  t.ok(r and r.tls == false and r.stages.helo.starttls_offered, "starttls=never: offered but not used")

  r, msg, code = probe(plain, { stop = "helo", starttls = "required" })
  t.is(code, "tls", "starttls=required, not offered -> 'tls'")
  t.like(msg, "does not offer STARTTLS", "message says so")
  local refuse = fx:peer("tls454")
  r = probe(refuse, { stop = "helo" })
  t.ok(r and r.tls == false and r.stages.starttls.code == 454, "starttls=auto, 454 -> goes on in plain text")
  r, msg, code = probe(refuse, { stop = "helo", starttls = "required" })
  t.is(code, "tls", "starttls=required, 454 -> 'tls'")
  local inject = fx:peer("inject", cert, key)
  r, msg, code = probe(inject, { stop = "helo" })
  t.is(code, "protocol", "bytes after the STARTTLS reply (response injection) -> 'protocol'")

  -- format_message is what probe sends
  local m, mid, pid = smtp.format_message { from = "a@outside.test", rcpt = "x@peer.test",
    message_id = "<fixed@runbook.test>", probe_id = "p1", date = "Thu, 01 Jan 2026 00:00:00 +0000" }
  t.like(m, "^From: <a@outside%.test>\r\nTo: <x@peer%.test>\r\n", "format_message: envelope in headers")
  t.ok(mid == "<fixed@runbook.test>" and pid == "p1", "format_message returns the ids")

  -- net.tcp_check
  r = net.tcp_check { host = S, port = plain.port, timeout = 2 }
  t.ok(r and r.ms >= 0 and r.peer == S .. ":" .. plain.port, "tcp_check: open port")
  r = net.tcp_check { host = S, port = plain.port, timeout = 2, bind = "127.0.0.99" }
  t.ok(r and r["local"]:find("^127%.0%.0%.99:"), "tcp_check: bind sets the source address")
  r, msg, code = net.tcp_check { host = S, port = free, timeout = 2 }
  t.is(code, "refused", "tcp_check: closed port -> 'refused'")
  ok = pcall(net.tcp_check, { host = S, port = 70000 })
  t.ok(not ok, "tcp_check: port out of range raises")
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
