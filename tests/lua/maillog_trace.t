-- maillog_trace.t: runbook.maillog trackers over real multi-host captures.
-- lab captures: ec2 (MX) -> dell Postfix -> dell Dovecot LMTP, with the faults produced on
-- purpose (Dovecot down, permission denied, quota, unknown user, MariaDB down). Hand-written
-- scenarios: queue-id reuse, expiry, multi-recipient bounces, content-filter hop.
-- Fixtures: tests/fixtures/maillog (origin and licence in SOURCES.md).
local t = require "tap"
local maillog = require "runbook.maillog"

local fixtures = (os.getenv("RUNBOOK_ROOT") or ".") .. "/tests/fixtures/maillog"
local lab = fixtures .. "/lab/"
local lm = fixtures .. "/scenarios/"

local function epoch(y, mo, d, h, mi, s)
	y = mo <= 2 and y - 1 or y
	local era = (y >= 0 and y or y - 399) // 400
	local yoe = y - era * 400
	local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
	return (era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468) * 86400 + h * 3600 + mi * 60 + s
end

local function lab_tracker(opts)
	opts.year = 2026
	local tr = maillog.tracker(opts)
	assert(tr:feed_file(lab .. "ec2-maillog.txt", { host = "ec2" }))
	assert(tr:feed_file(lab .. "dell-maillog.txt", { host = "dell" }))
	assert(tr:feed_file(lab .. "dell-dovecot.log", { host = "dell", source = "dell-dovecot" }))
	return tr
end

local function by_first_queue(msgs, qid)
	for _, m in ipairs(msgs) do
		if m.hops[1].queue_id == qid then return m end
	end
end

-- info@: every message, in time order
local tr = lab_tracker { addr = "info@toyota-phv.test" }
local msgs = tr:messages()
t.is(#msgs, 8, "info@: 8 messages (6 queued, 1 relay reject, 1 delivered without Postfix lines)")
local order = {}
for _, m in ipairs(msgs) do order[#order + 1] = m.hops[1].queue_id or m.hops[1].session end
t.is(table.concat(order, " "), "848FAA727E2 CD9CEA72012 NOQUEUE E7D55A720B3 6F51DA72702 4E0EAA72082 B6D44A7216E YmLQBP3CCmuHAQAAg+zDdQ",
	"info@: messages sorted by first time")

-- ec2 -> dell Postfix (smtp, queued as) -> dell Dovecot (LMTP session)
local m = by_first_queue(msgs, "CD9CEA72012")
t.ok(m ~= nil, "ec2 CD9CEA72012 found")
t.is(#m.hops, 3, "CD9CEA72012: three hops")
t.is(m.hops[1].host .. "/" .. m.hops[1].queue_id .. " " .. m.hops[1].status, "ec2/CD9CEA72012 sent", "hop 1 ec2 sent")
t.is(m.hops[1].queued_as, "EDC38A72065", "hop 1 reply names the next queue id")
t.is(m.hops[1].relay, "127.0.0.20[127.0.0.20]:25", "hop 1 relay")
t.is(m.hops[2].host .. "/" .. m.hops[2].queue_id, "dell/EDC38A72065", "hop 2 is dell's queue file")
t.is(m.hops[2].linked_by, "queued_as", "hop 2 linked by queued as")
t.is(m.hops[2].client, "unknown[127.0.0.10]", "hop 2 client is ec2")
t.is(m.hops[2].session, "aJdaANLACmtGPQAAg+zDdQ", "hop 2 LMTP reply session")
t.is(m.hops[3].kind .. " " .. m.hops[3].status .. " " .. m.hops[3].mailbox, "dovecot saved INBOX", "hop 3 Dovecot saved to INBOX")
t.is(m.hops[3].linked_by, "session", "hop 3 linked by the LMTP session id")
t.is(m.hops[3].message_id, "20261128115353.015878@vm", "hop 3 msgid")
t.is(m.message_id, "20261128115353.015878@vm", "message-id from cleanup")
t.is(m.final_status, "delivered", "CD9CEA72012 delivered")
t.ok(m.delivered and m.stopped_at == nil, "delivered: no stopped_at")
t.is(m.first_time, epoch(2026, 11, 28, 11, 53, 53), "first time = ec2 smtpd accept")
t.is(m.hops[1].delays.conn_setup, 0.05, "hop 1 delays c (connection setup)")
t.ok(math.abs(m.where.before_qmgr - 0.04) < 1e-9 and math.abs(m.where.transmission - 0.06) < 1e-9,
	"where the time went: sums of delays a and d over both Postfix hops")
t.is(#m.hops[1].lines, 5, "hop 1 keeps its 5 queue-id lines (client, message-id, qmgr, delivery, removed)")
t.like(m.hops[1].lines[1], "CD9CEA72012: client=unknown%[127%.0%.0%.99%]", "first kept line is the smtpd client line")

-- Dovecot down: deferred (relay=none, connection refused), then delivered 5 s later
m = by_first_queue(msgs, "E7D55A720B3")
t.is(#m.hops[1].attempts, 2, "E7D55A720B3: two attempts")
t.is(m.hops[1].attempts[1].status .. " " .. m.hops[1].attempts[1].dsn, "deferred 4.4.1", "attempt 1 deferred 4.4.1")
t.like(m.hops[1].attempts[1].reply, "Connection refused", "attempt 1 connection refused")
t.is(m.hops[1].delays.before_qmgr, 5, "final attempt waited 5 s before qmgr (the retry)")
t.is(m.final_status, "delivered", "E7D55A720B3 delivered after the retry")
t.is(m.duration, 6, "E7D55A720B3 took 6 s end to end")

-- MariaDB down: dell rejects (linked to the ec2 attempts), Dovecot auth failure, then a wrong 5.1.1
m = by_first_queue(msgs, "4E0EAA72082")
local a = m.hops[1].attempts
t.is(#a, 4, "4E0EAA72082: four attempts")
t.ok(a[1].remote_reject and a[1].remote_reject.host == "dell" and a[1].remote_reject.code == 451,
	"attempt 1 joined with dell's NOQUEUE reject 451")
t.is(a[1].remote_reject and a[1].remote_reject.reason, "Temporary lookup failure", "dell's reject reason")
t.ok(a[3].dovecot and a[3].dovecot.linked_by == "time", "attempt 3 joined with the Dovecot session by time")
t.like(a[3].dovecot and a[3].dovecot.error, "Auth USER lookup failed", "attempt 3: Dovecot userdb lookup failed")
t.is(m.final_status, "bounced", "4E0EAA72082 bounced")
t.is(m.hops[1].dsn, "5.1.1", "bounced with 5.1.1")
t.is(m.bounce_id, "4A979A721B6", "non-delivery notification queue id")
t.like(m.stopped_at and m.stopped_at.reason, "User doesn't exist", "stopped at ec2 with Dovecot's answer")
t.is(m.stopped_at and m.stopped_at.host, "ec2", "stopped at ec2")

-- relay access denied on ec2
m = msgs[3]
t.is(m.hops[1].kind .. " " .. m.final_status, "reject rejected", "NOQUEUE reject is its own message")
t.is(m.hops[1].code, 554, "reject code 554")
t.is(m.hops[1].enhanced, "5.7.1", "reject enhanced 5.7.1")
t.is(m.hops[1].reason, "Relay access denied", "reject reason")
t.is(m.hops[1].stage, "RCPT", "reject stage RCPT")
t.is(m.hops[1].host, "ec2", "reject on ec2")

-- the dell rejects were used as attempt details, not reported twice
local dell_rejects = 0
for _, x in ipairs(msgs) do
	if x.hops[1].kind == "reject" and x.hops[1].host == "dell" then dell_rejects = dell_rejects + 1 end
end
t.is(dell_rejects, 0, "dell rejects joined to ec2's attempts, not separate messages")

-- locked@: ec2 -> dell (queued as) -> Dovecot permission denied; still deferred at dell
tr = lab_tracker { addr = "locked@toyota-phv.test" }
msgs = tr:messages()
t.is(#msgs, 1, "locked@: one message")
m = msgs[1]
t.is(#m.hops, 3, "locked@: three hops")
t.is(m.hops[1].queue_id .. ">" .. m.hops[2].queue_id, "AED57A72848>01F5EA72025", "ec2 AED57A72848 then dell 01F5EA72025")
t.is(#m.hops[1].attempts, 3, "ec2 tried 3 times (2 LMTP deferrals, then SMTP)")
t.is(m.hops[2].status .. " " .. m.hops[2].dsn, "deferred 4.2.0", "dell's last attempt deferred 4.2.0")
t.is(m.hops[3].status, "failed", "Dovecot save failed")
t.is(m.hops[3].linked_by, "message_id", "Dovecot session found by message-id")
t.like(m.hops[3].error, "Permission denied", "Dovecot says Permission denied")
t.is(m.final_status, "deferred", "locked@ is still deferred (Postfix retries)")
t.is(m.stopped_at.host .. " " .. m.stopped_at.session, "dell kMzxEJDBCms8QwAAg+zDdQ", "stopped at dell's Dovecot session")
t.like(m.stopped_at.reply, "451 4%.2%.0", "stopped_at carries Postfix's reply too")

-- domain filter: every recipient of the domain; quota at DATA and at RCPT
tr = lab_tracker { domain = "toyota-phv.test" }
msgs = tr:messages()
local finals = {}
for _, x in ipairs(msgs) do
	finals[x.to] = finals[x.to] or {}
	table.insert(finals[x.to], x.final_status)
end
t.is(#msgs, 14, "domain: 14 messages")
t.is(table.concat(finals["full@toyota-phv.test"], ","), "bounced,bounced", "full@: both bounced (quota)")
t.is(table.concat(finals["nobody@toyota-phv.test"], ","), "bounced,bounced", "nobody@: bounced twice")
t.is(table.concat(finals["disabled@toyota-phv.test"], ","), "bounced", "disabled@: bounced")
local quota = by_first_queue(msgs, "4FD6AA7210E")
t.is(quota.hops[#quota.hops].error, "Quota exceeded (mailbox for user is full)", "quota at DATA: Dovecot's reason")

-- time window: only lines inside it match
local t1, t2 = epoch(2026, 11, 28, 11, 54, 0), epoch(2026, 11, 28, 11, 54, 30)
tr = lab_tracker { addr = "info@toyota-phv.test", since = t1, ["until"] = t2 }
msgs = tr:messages()
order = {}
for _, x in ipairs(msgs) do order[#order + 1] = x.hops[1].queue_id or x.hops[1].session end
t.is(table.concat(order, " "), "NOQUEUE E7D55A720B3 6F51DA72702", "since/until keep the 3 messages of 11:54:00-11:54:30")

-- netns captures (198.51.100.x): same chain through a real network namespace
tr = maillog.tracker { addr = "info@toyota-phv.test", year = 2026 }
assert(tr:feed_file(lab .. "netns-ec2-maillog.txt", { host = "ec2" }))
assert(tr:feed_file(lab .. "netns-dell-dovecot.log", { host = "dell", source = "dovecot" }))
msgs = tr:messages()
t.ok(#msgs >= 1 and msgs[1].hops[#msgs[1].hops].kind == "dovecot" and msgs[1].final_status == "delivered",
	"netns: first message reaches Dovecot and is delivered")

-- streaming: the same result when fed in 7-byte chunks and line by line
local function chunked(size)
	local tr2 = maillog.tracker { addr = "info@toyota-phv.test", year = 2026 }
	for _, spec in ipairs { { "ec2-maillog.txt", "ec2" }, { "dell-maillog.txt", "dell" }, { "dell-dovecot.log", "dell-dovecot" } } do
		local f = assert(io.open(lab .. spec[1], "rb"))
		local src = { host = spec[2]:match("^%a+"), source = spec[2] }
		if size then
			while true do
				local c = f:read(size)
				if not c then break end
				tr2:feed(c, src)
			end
		else
			tr2:feed_lines(f:lines(), src)
		end
		f:close()
	end
	local out = {}
	for _, x in ipairs(tr2:messages()) do out[#out + 1] = (x.hops[1].queue_id or "") .. ":" .. x.final_status .. ":" .. #x.hops end
	return table.concat(out, " ")
end
local whole = chunked(1 << 20)
t.is(chunked(7), whole, "7-byte chunks give the same messages as 1 MiB chunks")
t.is(chunked(nil), whole, "line by line gives the same messages")

-- bounded memory in Lua: max_messages evicts the oldest finished queue files
tr = maillog.tracker { domain = "toyota-phv.test", year = 2026, max_messages = 3 }
assert(tr:feed_file(lab .. "ec2-maillog.txt", { host = "ec2" }))
local st = tr:stats()
t.ok(st.queues <= 3 and st.evicted > 0, ("max_messages=3: %d kept, %d evicted"):format(st.queues, st.evicted))

-- queue id reuse (BABABABABA carries two different messages)
tr = maillog.tracker { year = 2019 }
assert(tr:feed_file(lm .. "reuse-of-queueid.log", { host = "relay06" }))
msgs = tr:messages()
local first, second
for _, x in ipairs(msgs) do
	if x.hops[1].queue_id == "DADADADADA" then first = x end
	if x.hops[1].queue_id == "BABABABABA" then second = x end
end
t.ok(first and #first.hops == 2 and first.hops[2].queue_id == "BABABABABA" and first.hops[2].relay:match("^gmail"),
	"reuse: DADADADADA -> first BABABABABA -> gmail")
t.ok(second and second.hops[2] and second.hops[2].queue_id == "CACACACACACA", "reuse: second BABABABABA -> CACACACACACA")
t.isnt(first and first.to, second and second.to, "reuse: two different recipients, not merged")
t.is(first and first.final_status, "sent", "handed to gmail: sent (next hop not in the logs)")
t.like(first and first.stopped_at.reason, "next hop not in the logs", "stopped_at explains the hand-off")

-- expired after days of deferrals, bounce notification
tr = maillog.tracker { year = 2020 }
assert(tr:feed_file(lm .. "expired.log", { host = "relay16" }))
msgs = tr:messages()
m = by_first_queue(msgs, "20B4E3D5BD")
t.ok(m and #m.hops == 2 and m.hops[2].queue_id == "23EBE3D5C0",
	"expired: instance hand-over 20B4E3D5BD -> 23EBE3D5C0 (relay :2501, queued as)")
t.is(m and m.final_status, "expired", "expired: expired in the second instance")
t.is(m and m.bounce_id, "A7E673C067", "expired: notification A7E673C067")
t.is(m and #m.hops[2].attempts, 5, "expired: the 5 deferred attempts kept")
t.is(m and m.hops[2].dsn, "4.1.1", "expired: last dsn 4.1.1 (over quota at the remote)")

-- one message, several recipients, different outcomes
tr = maillog.tracker { year = 2020 }
assert(tr:feed_file(lm .. "multi-rcpt-bounces.log", { host = "mail" }))
msgs = tr:messages()
local sent, bounced = 0, 0
for _, x in ipairs(msgs) do
	if x.final_status == "sent" then sent = sent + 1 elseif x.final_status == "bounced" then bounced = bounced + 1 end
end
t.ok(sent >= 1 and bounced >= 1, ("multi-recipient: %d sent, %d bounced per recipient"):format(sent, bounced))

-- content filter hop (amavis 10024 -> re-queued -> gmail)
tr = maillog.tracker { year = 2020 }
assert(tr:feed_file(lm .. "content-filter.log", { host = "mail" }))
msgs = tr:messages()
m = by_first_queue(msgs, "BA8F630001DA")
t.ok(m and #m.hops == 2 and m.hops[2].queue_id == "1310930001DB" and m.hops[2].linked_by == "queued_as",
	"content filter: BA8F630001DA -> 1310930001DB by the nested queued as")

-- programming errors raise
t.ok(not pcall(maillog.tracker, { adress = "x@y.test" }), "unknown tracker option raises")
t.ok(not pcall(maillog.tracker, { addr = 5 }), "bad addr type raises")
local ok, msg, code = maillog.tracker({}):feed_file("/nonexistent/mail.log")
t.ok(ok == nil and code == "notfound" and msg:match("nonexistent"), "missing file: nil, msg, 'notfound'")

t.done()
