-- maillog_options.t: the options tables and failures of runbook.maillog's C core (src/lmaillog.c)
-- go through rbaux: an unknown key, a non-string key, a wrong type or a value out of range
-- raises with a message naming the option (STYLE.md rules 3 and 7: {windw = 1} or
-- {per_line = "no"} must not silently mean a default); a log that cannot be opened is
-- nil, msg, code with rbaux's file codes.
local t = require "tap"
local maillog = require "runbook.maillog"

local LINE = "Nov 28 11:53:42 ec2 postfix/qmgr[1]: 848FAA727E2: removed"

local function raises(f, pattern, name)
	local ok, err = pcall(f)
	t.ok(not ok, name .. " raises")
	t.like(tostring(err), pattern, name .. ": the message names it")
end

-- parse
raises(function() maillog.parse(LINE, { yeer = 2026 }) end, "maillog%.parse: unknown option 'yeer'", "parse: unknown key")
raises(function() maillog.parse(LINE, { [1] = 2026 }) end, "option names must be strings", "parse: a non-string key")
raises(function() maillog.parse(LINE, { year = 2026.5 }) end, "option 'year' must be an integer", "parse: a fractional year")
raises(function() maillog.parse(LINE, { year = "2026" }) end, "option 'year' must be an integer", "parse: a year as a string")
raises(function() maillog.parse(LINE, { utc_offset = 100000 }) end, "option 'utc_offset' must be an integer in %-86400%.%.86400",
	"parse: an offset over a day")
raises(function() maillog.parse(LINE, { now = "soon" }) end, "option 'now' must be a number", "parse: now as a string")
local r = maillog.parse(LINE, { year = 2026, utc_offset = 3600, now = 1795867273 })
t.ok(r and r.queue_id == "848FAA727E2", "control: parse with every option")
t.is(r and r.time, 1795866822 - 3600, "control: year and utc_offset applied (2026-11-28T11:53:42 at UTC+1)")
t.ok(maillog.parse(LINE) and maillog.parse(LINE, nil), "control: parse without options")

-- scanner
raises(function() maillog.scanner { windw = 65536 } end, "maillog%.scanner: unknown option 'windw'", "scanner: unknown key")
raises(function() maillog.scanner { per_line = "no" } end, "option 'per_line' must be a boolean", "scanner: per_line as a string")
raises(function() maillog.scanner { per_line = 1 } end, "option 'per_line' must be a boolean", "scanner: per_line as a number")
raises(function() maillog.scanner { window = -1 } end, "option 'window' must be an integer in 0%.%.1073741824", "scanner: a negative window")
raises(function() maillog.scanner { keys = 1 << 25 } end, "option 'keys' must be an integer in 0%.%.16777216", "scanner: too many keys")
raises(function() maillog.scanner { max_line = 1.5 } end, "option 'max_line' must be an integer", "scanner: a fractional max_line")
raises(function() maillog.scanner { since = "yesterday" } end, "option 'since' must be a number", "scanner: since as a string")
raises(function() maillog.scanner { ["until"] = 0 / 0 } end, "option 'until' out of range", "scanner: until NaN")
raises(function() maillog.scanner { host = 42 } end, "option 'host' must be a string", "scanner: host as a number")
raises(function() maillog.scanner { host = ("h"):rep(200) } end, "option 'host' too long", "scanner: a long host")
raises(function() maillog.scanner { match = 5 } end, "option 'match' must be a string or a list of strings", "scanner: match as a number")
raises(function() maillog.scanner { match = { "a@b.test", 5 } } end, "option 'match' must be a string or a list of strings",
	"scanner: match list with a number")
raises(function() maillog.scanner "a@b.test" end, "table expected", "scanner: a string instead of the options table")
do
	local sc <close> = maillog.scanner { match = { "info@toyota-phv.test" }, since = 0, ["until"] = 4e9, host = "ec2",
		year = 2026, utc_offset = 0, now = 1795867273, window = 65536, keys = 1024, max_line = 4096, per_line = false }
	local out = sc:line("Nov 28 11:53:53 ec2 postfix/smtp[4]: CD9CEA72012: to=<info@toyota-phv.test>, relay=x[1.2.3.4]:25, status=sent (250 ok)")
	t.is(#out, 1, "control: a scanner with every option reports the matching line")
	local plain <close> = maillog.scanner()
	t.is(#plain:line(LINE), 1, "control: a scanner without options reports every mail line")
end

-- failures: nil, msg, code
do
	local sc <close> = maillog.scanner {}
	local root = os.getenv("RUNBOOK_ROOT") or "."
	local missing = root .. "/tests/fixtures/maillog/no-such.log"
	local ok, msg, code = sc:feed_file(missing)
	t.is(ok, nil, "feed_file on a missing file: nil")
	t.is(code, "notfound", "feed_file on a missing file: code notfound")
	t.like(msg, "no%-such%.log", "feed_file on a missing file: the message names the file")
	ok, msg, code = sc:open(root .. "/tests/fixtures/maillog")
	t.is(code, "type", "open on a directory: code type (" .. tostring(msg) .. ")")
	ok = sc:open(root .. "/tests/fixtures/maillog/SOURCES.md")
	t.is(ok, true, "control: open on a regular file")
end

t.done()
