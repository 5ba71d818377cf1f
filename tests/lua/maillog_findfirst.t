-- maillog_findfirst.t: the find-first scanner (search the raw input, look back for context,
-- probe watched ids) reports the same messages as the per-line scanner (parse every line),
-- for several addresses and a domain over every log fixture as one stream, whole and in
-- chunks; and stays within its look-back bound.
local t = require "tap"
local maillog = require "runbook.maillog"

local dir = (os.getenv("RUNBOOK_ROOT") or ".") .. "/tests/fixtures/maillog/"
local files = {}
local p = assert(io.popen("ls " .. dir .. "lab/*.txt " .. dir .. "lab/*.log " .. dir .. "scenarios/*.log " .. dir .. "defects/*.log"))
for f in p:lines() do files[#files + 1] = f end
p:close()
t.ok(#files >= 20, ("%d fixture logs"):format(#files))
local parts = {}
for _, f in ipairs(files) do
	local fh = assert(io.open(f, "rb"))
	parts[#parts + 1] = fh:read("a")
	fh:close()
end
local all = table.concat(parts, "\n")

local function summary(tr)
	local out = {}
	for _, m in ipairs(tr:messages()) do
		local hops = {}
		for _, h in ipairs(m.hops) do
			hops[#hops + 1] = ("%s/%s/%s/%d"):format(tostring(h.queue_id or h.session), tostring(h.status),
				tostring(h.linked_by), #(h.lines or {}))
		end
		out[#out + 1] = ("%s %s %s <%s> %s [%s]"):format(tostring(m.to), tostring(m.final_status), tostring(m.from),
			tostring(m.message_id), tostring(m.bounce_id), table.concat(hops, " "))
	end
	table.sort(out)
	return out
end

local function run(filter, per_line, chunk)
	local o = { year = 2026, per_line = per_line }
	for k, v in pairs(filter) do o[k] = v end
	local tr = maillog.tracker(o)
	if chunk then
		for i = 1, #all, chunk do tr:feed(all:sub(i, i + chunk - 1), { host = "h" }) end
	else
		tr:feed(all, { host = "h" })
	end
	return summary(tr), tr:stats()
end

local filters = {
	{ addr = "info@toyota-phv.test" }, { addr = "nobody@toyota-phv.test" }, { addr = "locked@toyota-phv.test" },
	{ addr = "full@toyota-phv.test" }, { addr = "sender@outside.test" }, { addr = { "lee@dest-l.test", "frank@dest-f.test" } },
	{ domain = "toyota-phv.test" }, { addr = "INFO@Toyota-PHV.test" },
}
for _, f in ipairs(filters) do
	local label = f.addr and (type(f.addr) == "table" and table.concat(f.addr, ",") or f.addr) or ("@" .. f.domain)
	local slow, sst = run(f, true)
	local fast, fst = run(f, false)
	t.ok(#slow > 0, ("%s: %d messages per line"):format(label, #slow))
	local same = #slow == #fast
	for i = 1, math.max(#slow, #fast) do
		if slow[i] ~= fast[i] then
			same = false
			t.diag("per line:   " .. tostring(slow[i]))
			t.diag("find first: " .. tostring(fast[i]))
			break
		end
	end
	t.ok(same, label .. ": find-first gives the same messages, hops and lines as the per-line scan")
	t.ok(fst.mail_lines < sst.mail_lines, ("%s: find-first parsed %d lines, per-line %d"):format(label, fst.mail_lines, sst.mail_lines))
	local chunked = run(f, false, 97)
	t.is(table.concat(chunked, "\n"), table.concat(fast, "\n"), label .. ": the same in 97-byte chunks")
end

-- bounded: a 64 KiB look-back does not reach a queue file's first lines 1 MiB earlier
local filler = {}
for i = 1, 9000 do
	filler[#filler + 1] = ("Nov 28 10:00:%02d h postfix/qmgr[2]: %010X: from=<x%d@else.test>, size=1, nrcpt=1 (queue active)"):format(i % 60, 0xB00000 + i, i)
end
local far = "Nov 28 09:59:00 h postfix/smtpd[1]: FA0000000F: client=unknown[127.0.0.1]\n" .. table.concat(filler, "\n") ..
	"\nNov 28 10:01:00 h postfix/smtp[3]: FA0000000F: to=<far@x.test>, relay=none, status=deferred (x)\n"
local tr = maillog.tracker { addr = "far@x.test", year = 2026, window = 64 << 10 }
tr:feed(far, "h")
local m = tr:messages()[1]
t.ok(m and #m.hops[1].lines == 1 and m.hops[1].client == nil, "window 64 KiB: the client line 1 MiB back is not reached")
t.ok(tr:stats().context_dropped >= 1, "and the missing context is counted")
tr = maillog.tracker { addr = "far@x.test", year = 2026, window = 2 << 20 }
tr:feed(far, "h")
m = tr:messages()[1]
t.is(m and m.hops[1].client, "unknown[127.0.0.1]", "window 2 MiB: the client line is found")

-- the same file again with the SSE2 search loop instead of AVX2 (where the CPU has AVX2)
if not os.getenv("RUNBOOK_MAILLOG_SIMD") then
	local bin = os.getenv("RUNBOOK") or "./runbook"
	local script = (os.getenv("RUNBOOK_ROOT") or ".") .. "/tests/lua/maillog_findfirst.t"
	local ph = assert(io.popen("RUNBOOK_MAILLOG_SIMD=sse2 '" .. bin .. "' lua '" .. script .. "' 2>&1"))
	local out = ph:read("a")
	local ok = ph:close()
	local passed = select(2, out:gsub("\nok ", "")) + (out:match("^ok ") and 1 or 0)
	t.ok(ok and not out:find("not ok") and passed >= 30, ("SSE2 loop: the same %d checks pass"):format(passed))
	if not ok or out:find("not ok") then t.diag(out:sub(1, 2000)) end
end

t.done()
