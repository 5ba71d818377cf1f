-- maillog_corpus.t: every line of every fixture file goes through runbook.maillog.parse and
-- through a scanner (no filter) without an error; the scanner reports exactly the lines parse()
-- calls mail lines; known files have known counts; mangled lines (cut at every length, bytes
-- flipped) never raise.
local t = require "tap"
local maillog = require "runbook.maillog"

-- The fixtures are in the repository (tests/fixtures/maillog, origin and licence in SOURCES.md).
local corpus = (os.getenv("RUNBOOK_ROOT") or ".") .. "/tests/fixtures/maillog"

local files = {}
local p = assert(io.popen("find '" .. corpus .. "' -type f ! -name '*.md' ! -name LICENSE | sort"))
for f in p:lines() do files[#files + 1] = f end
p:close()
t.ok(#files >= 220, ("fixture files found: %d"):format(#files))

local total, mail, errors, mismatch = 0, 0, {}, {}
local per_file = {}
for _, f in ipairs(files) do
	local fh = assert(io.open(f, "rb"))
	local data = fh:read("a")
	fh:close()
	local n, m = 0, 0
	for line in data:gmatch("([^\n]*)\n?") do
		if line ~= "" or n == 0 then
			n = n + 1
			local ok, r = pcall(maillog.parse, line, { year = 2024 })
			if not ok then errors[#errors + 1] = f .. ": " .. tostring(r)
			elseif r then m = m + 1 end
		end
	end
	local sc = maillog.scanner { year = 2024 }
	local ok, recs = pcall(sc.feed_file, sc, f)
	if not ok or not recs then
		errors[#errors + 1] = f .. ": scanner: " .. tostring(recs)
	elseif #recs ~= m then
		mismatch[#mismatch + 1] = ("%s: scanner %d, parse %d"):format(f, #recs, m)
	end
	sc:close()
	per_file[f:sub(#corpus + 2)] = { lines = n, mail = m }
	total, mail = total + n, mail + m
end
t.is(#errors, 0, ("no error on %d lines of %d files"):format(total, #files))
for i = 1, math.min(#errors, 10) do t.diag(errors[i]) end
t.is(#mismatch, 0, "unfiltered scanner reports exactly the mail lines of each file")
for i = 1, math.min(#mismatch, 10) do t.diag(mismatch[i]) end
t.ok(mail >= 550, ("%d mail lines recognised"):format(mail))

local function counts(rel) return per_file[rel] or { lines = -1, mail = -1 } end
local ec2 = counts("lab/ec2-maillog.txt")
t.is(ec2.mail, ec2.lines, "lab ec2-maillog: every line is a mail line")
local dov = counts("lab/dell-dovecot.log")
t.is(dov.mail, dov.lines, "lab dell-dovecot (Dovecot's own log file, ISO stamps, no host): every line")
-- mixed-programs.log: every postfix/dovecot line is a mail line; the rest are amavis, opendkim,
-- opendmarc, policyd-spf, CRON and spamd lines that share the file
local lm_path = corpus .. "/scenarios/mixed-programs.log"
local lm_missed, lm_wrong, lm_mail = {}, {}, 0
for line in io.lines(lm_path) do
	local prog = line:match("^%a+%s+%d+ [%d:]+ %S+ ([^%[:]+)")
	local r = maillog.parse(line, { year = 2020 })
	local ours = prog and (prog:match("^postfix") or prog == "dovecot")
	if r then lm_mail = lm_mail + 1 end
	if ours and not r then lm_missed[#lm_missed + 1] = line end
	if r and not ours then lm_wrong[#lm_wrong + 1] = line end
end
t.ok(lm_mail == 23 and #lm_missed == 0 and #lm_wrong == 0,
	("mixed-programs.log: %d Postfix/Dovecot lines (23), %d missed, %d other programs taken"):format(lm_mail, #lm_missed, #lm_wrong))
for i = 1, math.min(3, #lm_missed) do t.diag("missed: " .. lm_missed[i]) end
for i = 1, math.min(3, #lm_wrong) do t.diag("wrong: " .. lm_wrong[i]) end
-- formats.log: 31 lines = 1 comment + 6 non-mail lines (supervisord x3, syslog-ng, php-fpm,
-- nginx) + 24 Postfix/Dovecot lines
local ex = counts("scenarios/formats.log")
t.is(ex.mail, 24, "formats.log: 24 mail lines, noise and comments rejected")

-- Mangled input: every prefix of some tricky lines, and lines with bytes replaced.
local tricky = {
	"mailserver_mail.1.q9hzxg0estty@cloud.server1    | Dec  9 09:08:03 29f6b5aef89a dovecot: imap-login: Error: x",
	"2019-04-11T19:41:56.554496+00:00 09ad1b99d14b postfix/lmtp[238]: 87F043F2BE: to=<info@domain.de>, relay=none, delay=2370, delays=2370/0.07/0/0, dsn=4.4.1, status=deferred (connect to 172.20.0.6[172.20.0.6]:2525: Connection refused)",
	"Mar 22 18:18:15 host dovecot: lmtp(22587, email1@example.com): 5GjrDafYTFE7WAAABf1gKA: msgid=<D4887A5E@linode.com>: saved mail to INBOX",
	"Jan  2 11:05:17 svr1 postfix/smtpd[10361]: NOQUEUE: reject: RCPT from google.com[x.x.x.x]: 450 4.1.2 double-bounce@fqnd: Recipient address rejected: Domain not found; from=<> to=double-bounce@fqnd proto=ESMTP helo=<google.com>",
	"@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts): user=<m@w.de>, rip=80.187.101.33",
	"2026-11-28T11:54:57 lmtp(full@toyota-phv.test)<16006><CFD5HBHBCmuGPgAAg+zDdQ>: Info: msgid=<20261128115457.016533@vm>: save failed to INBOX: Quota exceeded (mailbox for user is full)",
}
local raised = 0
local seed = 12345
local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
for _, line in ipairs(tricky) do
	for i = 0, #line do
		if not pcall(maillog.parse, line:sub(1, i)) then raised = raised + 1 end
	end
	for _ = 1, 300 do
		local b = {}
		for i = 1, #line do b[i] = line:sub(i, i) end
		for _ = 1, 1 + rnd(4) do b[1 + rnd(#line)] = string.char(rnd(256)) end
		if not pcall(maillog.parse, table.concat(b)) then raised = raised + 1 end
	end
end
t.is(raised, 0, "cut and mangled lines never raise")

-- the tai64n stamp is decoded (label 0x400000004c91b044 minus the 10 s TAI offset)
local r = maillog.parse(tricky[5])
t.ok(r and math.floor(r.time) == 1284616250 and r.service == "imap-login", "tai64n stamp and host-less Dovecot line")

t.done()
