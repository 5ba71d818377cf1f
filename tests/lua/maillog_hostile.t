-- maillog_hostile.t: the mail-log parser and scanner on hostile input found by fuzzing (issue 9).
--  * in_list: a program tag with NUL bytes (unclean shutdowns leave NUL runs in logs) made the
--    scanner's fast path read past the end of a daemon-name literal (global-buffer-overflow under
--    ASan; tests/fixtures/fuzz/maillog/crash-in_list.bin is the fuzzer's crash input). Such a tag
--    names no Postfix or Dovecot program, so the line must not be classified as one.
--  * size=/nrcpt= with more digits than a long holds went through a double and an undefined
--    float-to-integer conversion (tests/fixtures/fuzz/maillog/ubsan-size.txt). Such a value is
--    left absent; values up to LONG_MAX are exact.
--  * a headerless line whose own tag comes first (`postfix-maied: ... smtpd[1]: ...`) was a
--    Postfix line to the full parser and not to the scanner's head parse, which read the tag at
--    the first `]: ` (tests/fixtures/fuzz/maillog/full-vs-head-family.txt): no scanner reported
--    it although it held the address. The tag at the start is the tag; both parsers agree now.
--  * sc:watch(key) with a key starting with a newline looped forever in the history look-back
--    (tests/fixtures/fuzz/maillog/timeout-watch-newline-key.txt).
-- Under `make asan` (with -fsanitize=float-cast-overflow) the old code aborts on these inputs.
local t = require "tap"
local maillog = require "runbook.maillog"

local root = os.getenv("RUNBOOK_ROOT") or "."

local function read(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

local function scan(text)
	local sc <close> = maillog.scanner {}
	local out = sc:feed(text)
	for _, r in ipairs(sc:flush()) do out[#out + 1] = r end
	return out
end

-- in_list: the fuzzer's crash input, then NUL runs of every length after every daemon name the
-- old code could run past (the bytes after a literal decide what the old code answered).
local crash = read(root .. "/tests/fixtures/fuzz/maillog/crash-in_list.bin")
t.ok(crash:find("qmgr\0", 1, true), "the crash input carries a program tag with a NUL byte")
local recs = scan(crash .. "\n")
t.is(#recs, 0, "crash input: no record (the tag names no mail program)")

local names = { "qmgr", "smtpd", "smtp", "lmtp", "cleanup", "pickup", "bounce", "local",
                "dovecot", "imap", "auth", "master", "anvil" }
local wrong, parsed = {}, 0
for _, name in ipairs(names) do
	for k = 1, 24 do
		for _, prefix in ipairs { "x/", "postfix/", "" } do
			local tag = prefix .. name .. ("\0"):rep(k)
			local line = "Nov 28 12:01:13 ec2 " .. tag .. "[1]: 3CEC5A7248E: removed"
			local r = maillog.parse(line)
			local s = scan(line .. "\n")
			parsed = parsed + 1
			if r ~= nil or #s ~= 0 then
				wrong[#wrong + 1] = ("%q -> parse %s, scanner %d records"):format(tag, r and r.family or "nil", #s)
			end
		end
	end
end
t.is(#wrong, 0, ("%d tags with NUL runs: none classified as a mail program"):format(parsed))
for i = 1, math.min(#wrong, 5) do t.diag(wrong[i]) end

-- control: the same lines without the NULs are mail lines, so the check above can fail
local ctl = scan("Nov 28 12:01:13 ec2 postfix/qmgr[1]: 3CEC5A7248E: removed\n")
t.is(#ctl, 1, "control: the tag without NULs is a Postfix line on the scanner's path")
t.is(ctl[1] and ctl[1].family, "postfix", "control: family postfix")
t.is(maillog.parse("Nov 28 12:01:13 ec2 dovecot: master: Warning: x").family, "dovecot",
	"control: a Dovecot tag is classified")

-- size= / nrcpt=: the fuzzer's input, then the boundaries of a long
local huge = read(root .. "/tests/fixtures/fuzz/maillog/ubsan-size.txt"):gsub("\n$", "")
t.like(huge, "size=9999999999999999999999999999", "the fixture carries a 28-digit size")
local r = maillog.parse(huge)
t.ok(r and r.family == "postfix" and r.queue_id == "3CEC5A7248E", "28-digit size: the line still parses")
t.is(r and r.size, nil, "28-digit size: size absent")
t.is(r and r.nrcpt, nil, "26-digit nrcpt: nrcpt absent")
t.is(r and r.from, "a@b.c", "28-digit size: the other fields are kept")
local s = scan(huge .. "\n")
t.ok(#s == 1 and s[1].size == nil and s[1].nrcpt == nil, "scanner: the same line, size and nrcpt absent")

local function qline(size, nrcpt)
	return ("Nov 28 12:01:13 ec2 postfix/qmgr[1]: 3CEC5A7248E: from=<a@b.c>, size=%s, nrcpt=%s (queue active)")
		:format(size, nrcpt)
end
r = maillog.parse(qline("9223372036854775807", "2147483648"))
t.is(r.size, math.maxinteger, "size = LONG_MAX is exact")
t.is(math.type(r.size), "integer", "size is an integer")
t.is(r.nrcpt, 2147483648, "nrcpt past INT_MAX is exact")
r = maillog.parse(qline("9223372036854775808", "18446744073709551616"))
t.is(r.size, nil, "size = LONG_MAX + 1: absent")
t.is(r.nrcpt, nil, "nrcpt = 2^64: absent")
r = maillog.parse(qline("12345", "3"))
t.is(r.size, 12345, "control: an ordinary size")
t.is(r.nrcpt, 3, "control: an ordinary nrcpt")
r = maillog.parse(qline("0", "1"))
t.is(r.size, 0, "size=0 is present and 0")
r = maillog.parse(qline("", "x"))
t.ok(r.size == nil and r.nrcpt == nil, "size and nrcpt without digits: absent")

-- full vs head parse: the fuzzer's line is a Postfix line of program postfix-maied, and both
-- scanner modes (find-first with an address, per-line) report it
do
	local line = read(root .. "/tests/fixtures/fuzz/maillog/full-vs-head-family.txt"):gsub("\n$", "")
	local pr = maillog.parse(line)
	t.ok(pr and pr.family == "postfix" and pr.program == "postfix-maied", "headerless line: its tag is postfix-maied")
	t.is(pr and pr.queue_id, nil, "headerless line: the smtpd[1]: and queue id in its message are message text")
	for _, per_line in ipairs { false, true } do
		local sc <close> = maillog.scanner { match = "s@example.test", per_line = per_line }
		local out = sc:feed(line .. "\n")
		for _, x in ipairs(sc:flush()) do out[#out + 1] = x end
		t.ok(#out == 1 and out[1].program == "postfix-maied",
			("headerless line with the address: the %s scanner reports it"):format(per_line and "per-line" or "find-first"))
	end
end

-- sc:watch with a key that starts with a newline (fz_maillog's timeout input): the find-first
-- look-back matched it again at the end of the line it had just read, forever
do
	local sc <close> = maillog.scanner { match = "info@toyota-phv.test" }
	sc:feed(read(root .. "/tests/fixtures/fuzz/maillog/timeout-watch-newline-key.txt"))
	local recs = sc:watch("\nNov 28 11:5")
	t.is(#recs, 0, "watch of a key with a newline returns (nothing to replay)")
	recs = sc:watch("Nov 28 11:5\n")
	t.is(#recs, 0, "watch of a key ending in a newline returns")
end

-- A FIFO (or any non-regular file) given as the log must not block the run: it is refused at
-- once with code "type" (it was opened blocking and waited for a writer forever).
do
	local exec = require "runbook.exec"
	local dir = os.tmpname(); os.remove(dir)
	assert(exec.run({ "mkdir", "-m", "700", dir }, { timeout = 5 }))
	local fifo = dir .. "/maillog.fifo"
	assert(exec.run({ "mkfifo", fifo }, { timeout = 5 }))
	-- A safety net, not a timing: a writer that opens the FIFO within 10 s, so a regression
	-- that opens it blocking gets unblocked (and then fails the checks) instead of hanging.
	local writer <close> = exec.spawn({ "timeout", "10", "sh", "-c", ': > "$1"', "sh", fifo }, { timeout = 15 })
	local tr = maillog.tracker {}
	local core = require "runbook.core"
	local t0 = core.now()
	local ok, msg, code = tr:feed_file(fifo)
	t.is(ok, nil, "feed_file on a FIFO fails")
	t.is(code, "type", "feed_file on a FIFO: code type (" .. tostring(msg) .. ")")
	t.ok(core.now() - t0 < 5, "feed_file on a FIFO returns at once (a regression blocks here)")
	ok, msg, code = tr:feed_file(dir)
	t.is(code, "type", "feed_file on a directory: code type")
	ok, msg, code = tr:feed_file(dir .. "/absent.log")
	t.is(code, "notfound", "feed_file on a missing file: notfound (control)")
	exec.run({ "rm", "-rf", dir }, { timeout = 5 })
end

t.done()
