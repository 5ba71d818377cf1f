-- maillog_golden.t: runbook.maillog.parse against the fixtures that carry expected fields
-- (tests/fixtures/maillog, origin and licence in SOURCES.md).
--  * whyscream/*.yaml: `data` (message part) + `results` (field -> value);
--    the message is put behind a syslog header for the daemon named in `pattern`.
--  * crowdsec/*/parser.assert: full syslog lines with expected program, pid, timestamp,
--    message, host, client, status codes, user and the parsed time.
-- Every field we extract that the fixture names must equal the fixture's value; per fixture
-- family a minimum number of comparisons guards against silently comparing nothing.
local t = require "tap"
local maillog = require "runbook.maillog"

local root = os.getenv("RUNBOOK_ROOT") or "."
local corpus = root .. "/tests/fixtures/maillog"

local function read(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

local function ls(dir, pat)
	local out = {}
	local p = assert(io.popen("ls -1 '" .. dir .. "' 2>/dev/null"))
	for name in p:lines() do
		if not pat or name:match(pat) then out[#out + 1] = name end
	end
	p:close()
	table.sort(out)
	return out
end

-- YAML subset of the fixtures: top-level `key: value`, `results:` with indented `key: value`;
-- values plain, "double quoted" (\" and \\ escapes) or 'single quoted'.
local function yaml_value(v)
	v = v:gsub("^%s+", ""):gsub("%s+$", "")
	if v:sub(1, 1) == '"' then
		local s = v:sub(2, -2)
		return (s:gsub('\\(.)', function(c)
			return ({ n = "\n", t = "\t", ['"'] = '"', ["\\"] = "\\" })[c] or ("\\" .. c)
		end))
	elseif v:sub(1, 1) == "'" then
		return (v:sub(2, -2):gsub("''", "'"))
	end
	return v
end

local function parse_yaml(text)
	local doc, results, in_results = {}, {}, false
	for line in text:gmatch("[^\n]+") do
		if not line:match("^%s*#") then
			local indent, k, v = line:match("^(%s*)([%w_]+):%s?(.*)$")
			if k then
				if #indent == 0 then
					in_results = (k == "results")
					if not in_results then doc[k] = yaml_value(v) end
				elseif in_results then
					results[k] = yaml_value(v)
				end
			end
		end
	end
	doc.results = results
	return doc
end

local DAEMON = {
	POSTFIX_SMTP = "smtp", POSTFIX_LMTP = "lmtp", POSTFIX_SMTPD = "smtpd", POSTFIX_QMGR = "qmgr",
	POSTFIX_CLEANUP = "cleanup", POSTFIX_BOUNCE = "bounce", POSTFIX_LOCAL = "local",
	POSTFIX_PIPE = "pipe", POSTFIX_ERROR = "error", POSTFIX_VIRTUAL = "virtual",
	POSTFIX_POSTSCREEN = "postscreen", POSTFIX_PICKUP = "pickup", POSTFIX_ANVIL = "anvil",
	POSTFIX_MASTER = "master", POSTFIX_DISCARD = "discard", POSTFIX_TLSPROXY = "tlsproxy",
	POSTFIX_TLSMGR = "tlsmgr", POSTFIX_SCACHE = "scache", POSTFIX_VERIFY = "verify",
	POSTFIX_SENDMAIL = "sendmail", POSTFIX_POSTDROP = "postdrop", POSTFIX_POSTSUPER = "postsuper",
	POSTFIX_TRIVIAL_REWRITE = "trivial-rewrite", POSTFIX_DNSBLOG = "dnsblog", POSTFIX_PROXYMAP = "proxymap",
	POSTFIX_POSTMAP = "postmap", POSTFIX_POSTFIX_SCRIPT = "postfix-script", POSTFIX_POSTLOG = "postlog",
}

-- whyscream field -> our field
local MAP = {
	postfix_queueid = "queue_id", postfix_status = "status",
	postfix_smtp_response = "reply", postfix_local_response = "reply", postfix_pipe_response = "reply",
	postfix_error_response = "reply", postfix_lmtp_response = "reply", postfix_virtual_response = "reply",
	postfix_client_hostname = "client_host", postfix_client_ip = "client_ip",
	postfix_client_port = "client_port", postfix_relay_hostname = "relay_host",
	postfix_relay_ip = "relay_ip", postfix_relay_port = "relay_port", postfix_action = "action",
	postfix_smtp_stage = "stage", postfix_status_code = "code",
	postfix_status_code_enhanced = "enhanced", postfix_status_data = "rejected",
	postfix_status_message = "reason", postfix_from = "from", postfix_bounce_queueid = "bounce_id",
	postfix_message_level = "level",
}
local KV = { to = "to", orig_to = "orig_to", relay = "relay", dsn = "dsn", from = "from",
	proto = "proto", helo = "helo", size = "size", nrcpt = "nrcpt", delay = "delay", conn_use = "conn_use" }

local function unangle(v) return v:match("^<(.*)>$") or v end

local function kv_pairs(s)
	local out = {}
	s = s:gsub(",%s*$", "")
	for k, v in (" " .. s):gmatch("[%s,]([%w_]+)=(%b<>)") do out[k] = unangle(v) end
	for k, v in (" " .. s):gmatch("[%s,]([%w_]+)=([^<,%s][^,%s]*)") do out[k] = out[k] or v end
	for k in (" " .. s):gmatch("[%s,]([%w_]+)=<>") do out[k] = "" end
	return out
end

-- whyscream
local wdir = corpus .. "/whyscream"
local files = ls(wdir, "%.yaml$")
local compared, parsed_cases, cases = 0, 0, 0
local failures = {}
local function check(name, got, want)
	compared = compared + 1
	if got ~= want then failures[#failures + 1] = ("%s: got %q want %q"):format(name, tostring(got), tostring(want)) end
end
for _, f in ipairs(files) do
	local doc = parse_yaml(read(wdir .. "/" .. f))
	local pat = doc.pattern and doc.pattern:match("%%{([%w_]+)}")
	local daemon = pat and DAEMON[pat]
	if daemon and doc.data then
		cases = cases + 1
		local line = "Jun  3 10:40:59 mx postfix/" .. daemon .. "[4242]: " .. doc.data
		local r = maillog.parse(line, { year = 2021 })
		local before_f, before_c = #failures, compared
		if r then
			parsed_cases = parsed_cases + 1
			check(f .. " program", r.program, "postfix/" .. daemon)
			check(f .. " pid", r.pid, 4242)
			for k, want in pairs(doc.results) do
				local ours = MAP[k]
				if ours and r[ours] ~= nil then
					local got = r[ours]
					if type(got) == "number" then want = tonumber(want) end
					if ours == "queue_id" and want == nil then want = "NOQUEUE" end
					check(f .. " " .. k, got, want)
				end
			end
			if doc.results.postfix_keyvalue_data then
				for k, v in pairs(kv_pairs(doc.results.postfix_keyvalue_data)) do
					local ours = KV[k]
					if ours and r[ours] ~= nil then
						local got = r[ours]
						if type(got) == "number" then v = tonumber(v) end
						check(f .. " kv " .. k, got, v)
					end
				end
				local d = doc.results.postfix_keyvalue_data:match("delays=([%d%./]+)")
				if d then
					local a, b, c, e = d:match("^([%d.]+)/([%d.]+)/([%d.]+)/([%d.]+)$")
					local want = { tonumber(a), tonumber(b), tonumber(c), tonumber(e) }
					for i = 1, 4 do check(f .. " delays[" .. i .. "]", r.delays and r.delays[i], want[i]) end
					check(f .. " delays named", r.delays and r.delays.transmission, tonumber(e))
				end
			end
		else
			failures[#failures + 1] = f .. ": not parsed as a mail line: " .. line
		end
		t.ok(#failures == before_f and compared > before_c,
			("whyscream %s: %d fields equal"):format(f, compared - before_c))
		for i = before_f + 1, #failures do t.diag(failures[i]) end
	end
end
t.ok(#files >= 190, ("whyscream fixtures found (%d)"):format(#files))
t.is(parsed_cases, cases, ("every whyscream case parses as a mail line (%d cases)"):format(cases))
t.ok(compared >= 600, ("whyscream: compared %d fields"):format(compared))
t.is(#failures, 0, "whyscream: every extracted field equals the fixture")

-- the delays fixture on its own (derived field names)
local dl = parse_yaml(read(wdir .. "/delays_0001.yaml"))
local r = maillog.parse("Jun  3 10:40:59 mx postfix/smtp[1]: 0F5383D: to=<a@b.test>, relay=none, delay=3.6, delays="
	.. dl.data .. ", dsn=4.4.1, status=deferred (x)")
t.ok(r and r.delays.before_qmgr == tonumber(dl.results.postfix_delay_before_qmgr)
	and r.delays.in_qmgr == tonumber(dl.results.postfix_delay_in_qmgr)
	and r.delays.conn_setup == tonumber(dl.results.postfix_delay_conn_setup)
	and r.delays.transmission == tonumber(dl.results.postfix_delay_transmission), "delays a/b/c/d by name")

-- crowdsec
local function days_from_civil(y, m, d)
	y = m <= 2 and y - 1 or y
	local era = (y >= 0 and y or y - 399) // 400
	local yoe = y - era * 400
	local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
	local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
	return era * 146097 + doe - 719468
end
local function iso_epoch(s)
	local y, mo, d, h, mi, se = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
	local off = 0
	local sign, oh, om = s:match("([+-])(%d%d):(%d%d)$")
	if sign then off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1) end
	return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + h * 3600 + mi * 60 + se - off
end
local function unquote_go(s) return (s:gsub('\\(.)', { ['"'] = '"', ["\\"] = "\\" })) end

local CS_PARSED = {
	program = "program", pid = "pid", message = "message", timestamp = "timestamp",
	timestamp8601 = "timestamp", remote_addr = "client_ip", dovecot_remote_ip = "client_ip",
	remote_host = "client_host", smtp_basic_status_code = "code", smtp_enhanced_status_code = "enhanced",
	dovecot_user = "user", -- (their `helo` holds the rejected address: not compared)
}
local cdir = corpus .. "/crowdsec"
local ccompared, cfail, clines = 0, {}, 0
for _, test in ipairs(ls(cdir)) do
	local assert_file = cdir .. "/" .. test .. "/parser.assert"
	local logname
	for _, n in ipairs(ls(cdir .. "/" .. test, "%.log$")) do logname = n end
	local ok_assert, text = pcall(read, assert_file)
	if logname and ok_assert and #text > 0 then
		local lines = {}
		for l in (read(cdir .. "/" .. test .. "/" .. logname)):gmatch("[^\n]+") do lines[#lines + 1] = l end
		local parsed, before_f, before_c = {}, #cfail, ccompared
		for a in text:gmatch("[^\n]+") do
			local stage, idx, kind, key, val = a:match('^results%["(s0%d%-[%w-]+)"%]%[".-"%]%[(%d+)%]%.Evt%.(%a+)%["([%w_]+)"%] == "(.*)"$')
			if stage then
				idx = tonumber(idx) + 1
				val = unquote_go(val)
				local line = lines[idx]
				local year = tonumber(val:match("^(%d%d%d%d)%-")) or 2024
				if line and not parsed[idx] then
					parsed[idx] = maillog.parse(line, { year = kind == "Enriched" and year or 2024 }) or false
					clines = clines + 1
				end
				local rec = parsed[idx]
				local where = ("%s line %d %s.%s"):format(test, idx, kind, key)
				if not rec then
					cfail[#cfail + 1] = where .. ": line not parsed"
				elseif kind == "Parsed" and CS_PARSED[key] then
					local got = rec[CS_PARSED[key]]
					if got ~= nil or key == "program" or key == "message" or key == "pid" or key:match("^timestamp") then
						ccompared = ccompared + 1
						if tostring(got) ~= val then cfail[#cfail + 1] = ("%s: got %q want %q"):format(where, tostring(got), val) end
					end
				elseif kind == "Meta" and key == "machine" then
					ccompared = ccompared + 1
					if rec.host ~= val then cfail[#cfail + 1] = ("%s: host %q want %q"):format(where, tostring(rec.host), val) end
				elseif kind == "Enriched" and key == "MarshaledTime" then
					local r2 = maillog.parse(line, { year = year })
					ccompared = ccompared + 1
					if not r2 or math.floor(r2.time) ~= iso_epoch(val) then
						cfail[#cfail + 1] = ("%s: time %s want %s (%s)"):format(where, tostring(r2 and r2.time), iso_epoch(val), val)
					end
				end
			end
		end
		t.ok(#cfail == before_f and ccompared > before_c, ("crowdsec %s: %d fields equal"):format(test, ccompared - before_c))
		for i = before_f + 1, #cfail do t.diag(cfail[i]) end
	end
end
t.ok(clines >= 40, ("crowdsec: %d asserted lines parsed"):format(clines))
t.ok(ccompared >= 250, ("crowdsec: compared %d fields"):format(ccompared))
t.is(#cfail, 0, "crowdsec: every asserted field we extract matches")

t.done()
