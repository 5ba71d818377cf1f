-- maillog_defects.t: the message-level defects of issue 12, one fixture each
-- (tests/fixtures/maillog/defects, hand-written in the lab's .test domains):
-- D1 MAIL-stage and truncated rejects, D2 received once per message, D3 queue files without a
-- delivery attempt, D4 Postfix's final status stands unless Dovecot logged a failure (sieve
-- fileinto recognised, the folder reported), D5 the sender's NDR as bounce_id, D6 stamps without
-- a zone next to stamps with one, D7 a Dovecot session logged before the LMTP reply that names
-- it (also in Dovecot's own log, fed before the Postfix log), and the "also" items (sender/message-id from later hops, rsyslog repeats, unreadable lines).
local t = require "tap"
local maillog = require "runbook.maillog"

local dir = (os.getenv("RUNBOOK_ROOT") or ".") .. "/tests/fixtures/maillog/defects/"

local function epoch(y, mo, d, h, mi, s)
	y = mo <= 2 and y - 1 or y
	local era = (y >= 0 and y or y - 399) // 400
	local yoe = y - era * 400
	local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
	return (era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468) * 86400 + h * 3600 + mi * 60 + s
end

local function track(file, opts, src)
	opts = opts or {}
	opts.year = opts.year or 2026
	local tr = maillog.tracker(opts)
	assert(tr:feed_file(dir .. file, src or { host = "ec2" }))
	return tr, tr:messages()
end

local function find(msgs, f)
	for _, m in ipairs(msgs) do if f(m) then return m end end
end

-- D1: a MAIL-stage reject (no to=) and a truncated RCPT reject are messages and are counted
local tr, msgs = track("d1-mail-stage-reject.log")
t.is(#msgs, 3, "D1: three rejects, the MAIL-stage and the truncated one included")
local mail = find(msgs, function(m) return m.hops[1].stage == "MAIL" end)
t.ok(mail and mail.final_status == "rejected" and mail.hops[1].code == 452 and mail.to == nil,
	"D1: the MAIL-stage reject (452 4.3.1) is a rejected message without a recipient")
t.is(mail and mail.hops[1].reason, "Insufficient system storage", "D1: its reason stops before the key=value tail")
local trunc = find(msgs, function(m) return m.hops[1].stage == "RCPT" and m.hops[1].lines[1]:find("outs$") end)
t.is(trunc and trunc.to, "info@toyota-phv.test", "D1: the truncated RCPT reject keeps the rejected recipient")
local c = maillog.domain_counts(msgs)
t.is(c.total.rejected, 3, "D1: mail-stats counts 3 rejected")
t.is(c.rows["(unknown)"] and c.rows["(unknown)"].rejected, 1, "D1: the MAIL-stage reject under (unknown)")
t.is(c.rows["toyota-phv.test"] and c.rows["toyota-phv.test"].rejected, 2, "D1: two RCPT rejects under the domain")
_, msgs = track("d1-mail-stage-reject.log", { addr = "sender@outside.test" })
t.is(#msgs, 1, "D1: with a sender filter, the reject naming the sender in full (MAIL stage names only the client, the truncated line lost it)")
_, msgs = track("d1-mail-stage-reject.log", { addr = "info@toyota-phv.test" })
t.is(#msgs, 2, "D1: with a recipient filter, both RCPT rejects, the truncated one included")

-- D2: received when the message entered the queue, once; retries are not receptions
local since = epoch(2026, 11, 28, 12, 5, 0)
tr, msgs = track("d2-received-once.log", { since = since })
c = maillog.domain_counts(msgs, { since = since })
local row = c.rows["toyota-phv.test"] or {}
t.is(row.received, 1, "D2: --since after the first message arrived: only the second is received (retries are not)")
t.is(row.sent, 2, "D2: both were sent inside the window")
t.is(row.deferred, 0, "D2: the retried message is not deferred at the end of the window")
_, msgs = track("d2-received-once.log")
c = maillog.domain_counts(msgs)
t.is(c.total.received, 2, "D2: without a window, two messages received, each once despite 3 qmgr lines")
local early = epoch(2026, 11, 28, 12, 12, 0)
_, msgs = track("d2-received-once.log", { ["until"] = early })
c = maillog.domain_counts(msgs, { ["until"] = early })
t.is(c.total.deferred, 1, "D2: deferred = still deferred at the end of a window that ends before the retry succeeded")

-- D3: queue files with no delivery attempt yet are messages and are counted
_, msgs = track("d3-not-attempted.log")
t.is(#msgs, 2, "D3: the two waiting queue files are messages")
local w = find(msgs, function(m) return m.hops[1].queue_id == "3C4D5E6F70" end)
t.ok(w and w.final_status == "queued" and w.not_attempted and w.nrcpt == 2,
	"D3: status queued, not attempted, nrcpt 2")
t.like(w and w.stopped_at and w.stopped_at.reason or "", "no delivery attempt", "D3: stopped_at says no attempt yet")
c = maillog.domain_counts(msgs)
t.is(c.rows["(not yet attempted)"] and c.rows["(not yet attempted)"].received, 2, "D3: counted as received under (not yet attempted)")
t.is(c.waiting, 2, "D3: reported as waiting")
_, msgs = track("d3-not-attempted.log", { addr = "sender@outside.test" })
t.is(#msgs, 1, "D3: with a sender filter, the waiting queue file of that sender")

-- D4: sieve fileinto is saved (folder Junk); a Dovecot session without an outcome does not
-- override Postfix's "250 ... Saved"
for _, filter in ipairs { {}, { addr = "info@toyota-phv.test" } } do
	local label = filter.addr and " (address filter)" or ""
	_, msgs = track("d4-sieve-junk.log", filter, { host = "dell" })
	local junk = find(msgs, function(m) return m.message_id == "junk-1@outside.test" end)
	t.ok(junk and junk.final_status == "delivered" and junk.mailbox == "Junk", "D4: fileinto Junk: delivered, mailbox Junk" .. label)
	t.is(junk and junk.hops[#junk.hops].kind .. " " .. junk.hops[#junk.hops].status, "dovecot saved", "D4: the Dovecot hop is saved" .. label)
	local quiet = find(msgs, function(m) return m.message_id == "quiet-2@outside.test" end)
	t.is(quiet and quiet.final_status, "delivered", "D4: a session with no recognised outcome: Postfix's Saved stands" .. label)
	c = maillog.domain_counts(msgs)
	t.is(c.total.bounced, 0, "D4: nothing counted as bounced" .. label)
end

-- D5: the sender's NDR is bounce_id; both notifications kept, labelled
_, msgs = track("d5-two-notifications.log", { addr = "nobody@toyota-phv.test" })
local b = msgs[1]
t.is(b and b.bounce_id, "AD1E2F3A4B", "D5: bounce_id is the sender's non-delivery notification")
t.is(b and b.bounces and b.bounces["postmaster non-delivery"], "BE2F3A4B5C", "D5: the postmaster copy is kept, labelled")
t.is(b and b.bounces and b.bounces["sender non-delivery"], "AD1E2F3A4B", "D5: the sender copy labelled")

-- D6: Dovecot's own zone-less log next to Postfix's rsyslog stamps with +03:00, either order
local function d6(order)
	local tr6 = maillog.tracker { addr = "info@toyota-phv.test", year = 2024 }
	for _, f in ipairs(order) do
		assert(tr6:feed_file(dir .. f, { host = "mail", source = f }))
	end
	return tr6:messages(), tr6:stats()
end
for _, order in ipairs { { "d6-postfix-rsyslog.log", "d6-dovecot-own.log" }, { "d6-dovecot-own.log", "d6-postfix-rsyslog.log" } } do
	local m6, st6 = d6(order)
	local m = m6[1]
	t.ok(#m6 == 1 and m.final_status == "delivered" and m.hops[#m.hops].kind == "dovecot",
		"D6: one message, delivered through Dovecot (" .. order[1] .. " first)")
	t.ok(m and math.abs(m.duration - 0.6) < 1e-6, ("D6: duration %s s, not 10800 (%s first)"):format(tostring(m and m.duration), order[1]))
	t.is(m and m.hops[#m.hops].time, epoch(2024, 4, 30, 12, 9, 27), "D6: Dovecot's 15:09:27 read as +03:00")
	t.ok((st6.zone_inferred or 0) >= 1 and st6.zone_unknown == 0, "D6: the inference is counted in stats()")
end
-- the caller's utc_offset wins: no inference
local tr6 = maillog.tracker { addr = "info@toyota-phv.test", year = 2024, utc_offset = 0 }
assert(tr6:feed_file(dir .. "d6-postfix-rsyslog.log", { host = "mail", source = "p" }))
assert(tr6:feed_file(dir .. "d6-dovecot-own.log", { host = "mail", source = "d" }))
local m6 = tr6:messages()
t.is(m6[1] and m6[1].hops[#m6[1].hops].time, epoch(2024, 4, 30, 15, 9, 27), "D6: utc_offset = 0 given: Dovecot's stamp read as UTC")
-- a host that never names its zone beside one that does: read as UTC and counted, not silently
tr6 = maillog.tracker { addr = "info@toyota-phv.test", year = 2024 }
assert(tr6:feed_file(dir .. "d6-postfix-rsyslog.log", { host = "mail", source = "p" }))
assert(tr6:feed_file(dir .. "d6-dovecot-own.log", { host = "other", source = "d" }))
tr6:messages()
t.is(tr6:stats().zone_unknown, 1, "D6: a zone-less host next to zoned ones is counted in stats().zone_unknown")

-- a docker --timestamps stamp (Z) in front of a zone-less syslog stamp: the time is docker's, not shifted
tr6 = maillog.tracker { addr = "info@toyota-phv.test", year = 2024 }
assert(tr6:feed_file(dir .. "d6-postfix-rsyslog.log", { host = "mail", source = "p" }))
tr6:feed_line("2024-04-30T12:09:27.100000000Z Apr 30 15:09:27 lmtp(info@toyota-phv.test)<300><Zz1LA3mXBmZ2BQAA0J78UA>: Info: msgid=<zone-1@outside.test>: saved mail to INBOX",
	{ host = "mail", source = "d" })
m6 = tr6:messages()
t.ok(m6[1] and math.abs(m6[1].hops[#m6[1].hops].time - (epoch(2024, 4, 30, 12, 9, 27) + 0.1)) < 1e-6,
	"D6: a docker Z stamp in front of a local one: docker's time, not shifted by the host's zone")

-- D7: a Dovecot session logged before the LMTP reply, its lines naming only `info`
for _, filter in ipairs { {}, { addr = "info@toyota-phv.test" }, { domain = "toyota-phv.test" } } do
	local label = filter.addr and " (address filter)" or filter.domain and " (domain filter)" or ""
	_, msgs = track("d7-short-user.log", filter, { host = "dell" })
	local m = msgs[1]
	local last = m and m.hops[#m.hops] or {}
	t.ok(#msgs == 1 and #m.hops == 2 and last.kind == "dovecot" and last.status == "saved" and last.mailbox == "INBOX"
		and last.linked_by == "session", "D7: the earlier Dovecot session is found by its session id" .. label)
end
-- the same in 5-byte chunks (the session lines cross chunk boundaries)
do
	local tr7 = maillog.tracker { addr = "info@toyota-phv.test", year = 2026 }
	local f = assert(io.open(dir .. "d7-short-user.log", "rb"))
	local data = f:read("a")
	f:close()
	for i = 1, #data, 5 do tr7:feed(data:sub(i, i + 4), { host = "dell" }) end
	local m = tr7:messages()[1]
	t.ok(m and #m.hops == 2 and m.hops[2].status == "saved", "D7: same result fed in 5-byte chunks")
end

-- D7, two logs: Dovecot's lines in a log of their own, fed BEFORE the Postfix log whose LMTP
-- reply names the session (the session was lost: its lines name only `info`, so no filter
-- reported them, and the Postfix log came too late). Every filter, find-first and per-line.
do
	local f = assert(io.open(dir .. "d7-short-user.log", "rb"))
	local all = f:read("a")
	f:close()
	local dove, post = {}, {}
	for line in all:gmatch("[^\n]+") do
		local list = line:find(" dovecot: ", 1, true) and dove or post
		list[#list + 1] = line
	end
	t.ok(#dove == 3 and #post == 5, "D7 two logs: the fixture splits into 3 Dovecot and 5 Postfix lines")
	for _, filter in ipairs { {}, { addr = "info@toyota-phv.test" }, { domain = "toyota-phv.test" },
		{ addr = "info@toyota-phv.test", per_line = true } } do
		local label = (filter.addr and "address filter" or filter.domain and "domain filter" or "no filter")
			.. (filter.per_line and ", per_line" or "")
		filter.year = 2026
		local tr7 = maillog.tracker(filter)
		tr7:feed(table.concat(dove, "\n") .. "\n", { host = "dell", source = "dovecot" })
		tr7:feed(table.concat(post, "\n") .. "\n", { host = "dell", source = "postfix" })
		local msgs7 = tr7:messages()
		local m = msgs7[1]
		local last = m and m.hops[#m.hops] or {}
		t.ok(#msgs7 == 1 and #m.hops == 2 and last.kind == "dovecot" and last.status == "saved" and last.mailbox == "INBOX"
			and last.linked_by == "session", "D7 two logs, Dovecot's first: the session is found (" .. label .. ")")
		t.is(last.lines and #last.lines, 1, "D7 two logs: its saved line once, not twice (" .. label .. ")")
	end
end

-- also: sender and message-id from later hops; rsyslog repeats; unreadable lines counted
tr, msgs = track("also-later-hops.log", { addr = "info@toyota-phv.test" })
local later = find(msgs, function(m) return m.hops[1].queue_id == "5E6F708192" end)
t.ok(later and #later.hops == 2, "also: ec2 5E6F708192 -> dell 6F708192A3")
t.is(later and later.from, "sender@outside.test", "also: sender from the later hop")
t.is(later and later.message_id, "later-1@outside.test", "also: message-id from the later hop")
local rep = find(msgs, function(m) return m.hops[1].kind == "reject" end)
t.ok(rep and rep.hops[1].client == "unknown[127.0.0.99]" and rep.hops[1].code == 554 and rep.count == 3,
	"also: `message repeated 3 times: [...]` unwrapped: client, code, count 3")
c = maillog.domain_counts(msgs)
t.is(c.total.rejected, 3, "also: the repeated reject counts 3")
t.is(tr:stats().unrecognised, 1, "also: the line the parser cannot read is counted")
local odd = find(msgs, function(m) return m.hops[1].queue_id == "708192A3B4" end)
t.ok(odd and odd.final_status == "delivered" and #odd.hops[1].lines == 4, "also: and kept with its queue file")

-- programming errors
t.ok(not pcall(maillog.domain_counts, msgs, { sinse = 1 }), "domain_counts: unknown option raises")
t.ok(not pcall(maillog.domain_counts, nil), "domain_counts: bad messages raises")

t.done()
