--[[ runbook.maillog: follow mail through Postfix and Dovecot logs ("what happened to mail for
ADDR between T1 and T2"). The parsing and filtering hot path is C (src/lmaillog.c, maillog*.c);
this file groups lines into messages and hops. `require "runbook.maillog"` returns this module.

  local maillog = require "runbook.maillog"

  maillog.parse(line [, {year=, utc_offset=, now=}]) -> record | nil     (nil: not a mail line)
      One line, any header format (RFC 3164 incl. German months, ISO 8601/RFC 3339, docker
      --timestamps, `name | ` compose prefixes, no header, postlog, tai64n). Fields, only when
      present: family ("postfix"|"dovecot"), time (epoch s; RFC 3164 uses `year` or the current
      year, zone-less stamps use `utc_offset` seconds, default UTC), timestamp (raw text),
      container, host, program ("postfix-out/smtp"), instance ("postfix-out"), daemon ("smtp"),
      pid, message, level, event, queue_id ("NOQUEUE" for rejects), from, to, orig_to, relay,
      relay_host, relay_ip, relay_port, delay, delays ({a,b,c,d} also named before_qmgr,
      in_qmgr, conn_setup, transmission), dsn, status, reply (text in parentheses), queued_as
      (next hop's id), session (Dovecot session, also from LMTP `250 ... <rcpt> SESSION Saved`),
      message_id, client, client_host, client_ip, client_port, action, stage, code, enhanced,
      rejected, reason, proto, helo, size, nrcpt, bounce_id, conn_use, tls, service (Dovecot:
      lmtp/lda/imap-login...), user, mailbox, saved (true|false), error, text, repeated (N of
      rsyslog's "message repeated N times: [...]", unwrapped), zoneless (true: the time came from a
      stamp without a zone).
      event is one of: connect disconnect client message-id queued from recipient delivery
      removed expired bounce pickup reject | saved save-failed rcpt-error login dovecot.

  maillog.scanner(opts) -> the C streaming filter (see src/lmaillog.c); used by trackers.

  local t = maillog.tracker{
      addr = "info@example.test" | {...},   -- recipient/sender addresses (case-insensitive)
      domain = "example.test" | {...},      -- or whole domains
      since = T1, ["until"] = T2,           -- epoch seconds; lines outside are not matched
      year = 2026, utc_offset = 0,          -- for stamps without year / zone
      max_messages = 5000,                  -- queue files kept; the oldest finished go first
      max_lines = 100,                      -- raw lines (and delivery attempts) kept per hop
      window = 4 << 20, keys = 65536,       -- C look-back bytes / key slots per source
      per_line = false,                     -- true: parse every line (no find-first; slower)
  }
  t:feed(chunk, src)          raw bytes of a stream (partial lines carried over)
  t:feed_line(line, src)      one line (e.g. from ctx:docker_logs)
  t:feed_lines(iter, src)     every line of an iterator
  t:feed_file(path, src) -> true | nil, msg, code
      src = { host = "ec2", source = "ec2-postfix" } or a host string. Each source has its own
      C scanner (own partial line, own context); host fills in lines without one.
  t:messages() -> list of messages sorted by first time:
      { to=, from=, message_id=, first_time=, last_time=, duration=,
        final_status = "delivered"|"sent"|"deferred"|"bounced"|"expired"|"rejected"|"failed"|"queued",
        delivered = bool, bounce_id = NDR queue id or nil,
        stopped_at = nil | { host=, queue_id= | session=, status=, reason= },
        where = { before_qmgr=, in_qmgr=, conn_setup=, transmission= },  -- sums over hops
        hops = { hop... } }
      postfix hop: { kind="postfix", host=, queue_id=, from=, to=, orig_to=, client=,
        message_id=, arrived=, time= (last attempt), status=, dsn=, relay=, reply=, code=,
        delay=, delays= {before_qmgr=, in_qmgr=, conn_setup=, transmission=, [1..4]},
        queued_as=, session=, bounce_id=, removed=, attempts = { {time=, status=, dsn=,
        relay=, reply=, code=, delay=, delays=, queued_as=, session=} ... }, lines = {...},
        linked_by = nil|"queued_as"|"session"|"message_id"|"time" }
      dovecot hop: { kind="dovecot", host=, session=, user=, to=, message_id=, time=,
        status = "saved"|"failed"|"seen", mailbox=, error=, lines=, linked_by= }
      reject hop: { kind="reject", host=, queue_id=, status="rejected", stage=, code=,
        enhanced=, reason=, client=, from=, to=, time=, lines= }
  t:stats() -> { bytes=, lines=, mail_lines= (with a filter: the lines parsed), matched=,
                 reported=, context_dropped=, truncated=, unreadable=, unrecognised=,
                 zone_inferred=, zone_unknown=, queues=, evicted= }
  maillog.domain_counts(t:messages() [, {since=, until=}]) -> per-domain counts (see below)
  Messages also carry: mailbox (Dovecot's folder when saved), bounces ({["sender non-delivery"]=
  id, ["postmaster non-delivery"]=id, ...}) and notifications, count (a rsyslog-repeated reject),
  received (when it entered the queue), not_attempted/nrcpt (a queue file with no attempt yet).
  Stamps without a zone are read in the zone the same host's other stamps name (unless utc_offset
  is given); stats().zone_unknown counts those that could not be placed.
Memory is bounded: C keeps 4*window (find-first history) or window (per-line ring) + keys*24
bytes per source (16 MiB + 1.5 MiB by default); Lua keeps at most max_messages
queue files (plus as many Dovecot sessions / rejects) of at most max_lines lines each.
]]

local core = ...
if type(core) ~= "table" then error("runbook.maillog: load through require \"runbook.maillog\"", 2) end

local M = { core = core, parse = core.parse, scanner = core.scanner }

local lower = string.lower

local TRACKER_OPTS = {
	addr = true, domain = true, since = true, ["until"] = true, year = true, utc_offset = true,
	now = true, max_messages = true, max_lines = true, window = true, keys = true, per_line = true,
}
local SRC_OPTS = { host = true, source = true }

local function list_of(v, name)
	if v == nil then return {} end
	if type(v) == "string" then return { v } end
	if type(v) ~= "table" then error(("option '%s' must be a string or a list of strings"):format(name), 3) end
	for i, s in ipairs(v) do
		if type(s) ~= "string" or s == "" then
			error(("option '%s'[%d] must be a non-empty string"):format(name, i), 3)
		end
	end
	return v
end

local Tracker = {}
Tracker.__index = Tracker

function M.tracker(opts)
	opts = opts or {}
	if type(opts) ~= "table" then error("bad argument #1 to 'tracker' (table expected)", 2) end
	for k in pairs(opts) do
		if not TRACKER_OPTS[k] then error(("unknown option '%s'"):format(tostring(k)), 2) end
	end
	for _, k in ipairs { "since", "until", "max_messages", "max_lines" } do
		if opts[k] ~= nil and type(opts[k]) ~= "number" then
			error(("option '%s' must be a number"):format(k), 2)
		end
	end
	local self = setmetatable({
		addrs = {}, domains = {}, needles = {},
		max_messages = opts.max_messages or 5000,
		max_lines = opts.max_lines or 100,
		scanner_opts = {
			since = opts.since, ["until"] = opts["until"], year = opts.year,
			utc_offset = opts.utc_offset, now = opts.now, window = opts.window, keys = opts.keys,
			per_line = opts.per_line,
		},
		scanners = {}, scanner_list = {},
		queues = {}, queue_order = {}, queue_head = 1, queue_tail = 0, nqueues = 0, evicted = 0, seq = 0,
		sessions = {}, session_order = {}, session_head = 1, session_tail = 0,
		rejects = {}, rejects_head = 1, rejects_tail = 0,
		watched = {}, watch_ring = {}, watch_n = 0,
		-- zones: seconds east of UTC last seen in a stamp that names its zone, per host; stamps
		-- without a zone from the same host are read in it (unless the caller set utc_offset)
		zones = {}, zone_fixed = opts.utc_offset ~= nil, zone_inferred = 0, zone_unknown = 0,
		unrecognised = 0,
	}, Tracker)
	for _, a in ipairs(list_of(opts.addr, "addr")) do
		self.addrs[lower(a)] = true
		self.needles[#self.needles + 1] = a
	end
	for _, d in ipairs(list_of(opts.domain, "domain")) do
		d = lower(d:gsub("^@", ""))
		self.domains[d] = true
		self.needles[#self.needles + 1] = "@" .. d
	end
	if #self.needles > 0 then self.scanner_opts.match = self.needles end
	return self
end

-- Is this address one the tracker was asked about (no filter: all)?
function Tracker:wanted(addr)
	if addr == nil then return false end
	if next(self.addrs) == nil and next(self.domains) == nil then return true end
	addr = lower(addr)
	if self.addrs[addr] then return true end
	local d = addr:match("@([^@]+)$")
	return d ~= nil and self.domains[d] == true
end

-- Is this record one the tracker was asked about? With no filter every one is; with a filter
-- the scanner reported the line because it names a watched address or domain somewhere (a
-- MAIL-stage reject names only the sender, a truncated line may lack its to=).
function Tracker:wanted_line(rec)
	if next(self.addrs) == nil and next(self.domains) == nil then return true end
	if self:wanted(rec.to) or self:wanted(rec.from) or self:wanted(rec.rejected) then return true end
	local line = rec.lines and rec.lines[1]
	if not line then return false end
	line = lower(line)
	for _, n in ipairs(self.needles) do
		if line:find(lower(n), 1, true) then return true end
	end
	return false
end

local function source_of(src)
	if src == nil then return "default", nil end
	if type(src) == "string" then return src, src end
	if type(src) ~= "table" then error("bad source (table or host string expected)", 3) end
	for k in pairs(src) do
		if not SRC_OPTS[k] then error(("unknown option '%s'"):format(tostring(k)), 3) end
	end
	return src.source or src.host or "default", src.host
end

function Tracker:scanner_for(src)
	local name, host = source_of(src)
	local sc = self.scanners[name]
	if not sc then
		local o = {}
		for k, v in pairs(self.scanner_opts) do o[k] = v end
		o.host = host
		sc = core.scanner(o)
		self.scanners[name] = sc
		self.scanner_list[#self.scanner_list + 1] = sc
		-- keys learned from other sources so far
		for key in pairs(self.watched) do sc:watch(key) end
	end
	return sc
end

-- Next-hop ids learned so far, shared with every source; the most recent WATCH_KEEP are kept
-- for sources opened later (bounded).
local WATCH_KEEP = 4096
function Tracker:watch(key)
	if self.watched[key] then return end
	self.watch_n = self.watch_n + 1
	local slot = self.watch_n % WATCH_KEEP
	local old = self.watch_ring[slot]
	if old then self.watched[old] = nil end
	self.watch_ring[slot] = key
	self.watched[key] = true
	-- the scanner that reported the record has followed the id itself (and may have seen it end);
	-- another returns the lines of it read before (Dovecot's own log fed before Postfix's)
	local feeding = self.feeding
	for _, sc in ipairs(self.scanner_list) do
		if sc ~= feeding then
			local recs = sc:watch(key)
			for i = 1, #recs do self:add(recs[i]) end
		end
	end
end

local function push_line(self, list, line)
	if #list < self.max_lines then list[#list + 1] = line end
end

-- Keeps the number of queue files bounded: drop the oldest finished one (looking at the 64
-- oldest), else the oldest. queue_order[queue_head..queue_tail] lists keys, oldest first.
function Tracker:evict()
	local order = self.queue_order
	while self.nqueues > self.max_messages and self.queue_head <= self.queue_tail do
		local victim_i = self.queue_head
		for i = self.queue_head, math.min(self.queue_tail, self.queue_head + 64) do
			local q = self.queues[order[i]]
			if q and q.removed then victim_i = i break end
		end
		local key = order[victim_i]
		order[victim_i] = order[self.queue_head]
		order[self.queue_head] = nil
		self.queue_head = self.queue_head + 1
		if key and self.queues[key] then
			self.queues[key] = nil
			self.nqueues = self.nqueues - 1
			self.evicted = self.evicted + 1
		end
	end
	-- rejects and Dovecot sessions: plain FIFOs with head indices (no O(n) shifting)
	while self.rejects_tail - self.rejects_head + 1 > self.max_messages do
		self.rejects[self.rejects_head] = nil
		self.rejects_head = self.rejects_head + 1
	end
	while self.session_tail - self.session_head + 1 > self.max_messages do
		local sid = self.session_order[self.session_head]
		self.session_order[self.session_head] = nil
		self.session_head = self.session_head + 1
		if sid then self.sessions[sid] = nil end
	end
end

function Tracker:queue(r)
	local base = (r.host or "?") .. "/" .. r.queue_id
	local key = self.queues[base] and self.queues[base].current or base
	local q = self.queues[key]
	if q and q.removed and r.event ~= "removed" and r.time and q.last_time and r.time > q.last_time then
		q = nil -- the id was reused for a new message
		self.seq = self.seq + 1
		key = base .. "#" .. self.seq
		if self.queues[base] then self.queues[base].current = key end
	end
	if not q then
		self.seq = self.seq + 1
		q = { host = r.host, queue_id = r.queue_id, rcpts = {}, rcpt_order = {}, lines = {},
		      first_time = r.time, last_time = r.time, seq = self.seq, key = key }
		self.queues[key] = q
		if key ~= base and self.queues[base] then self.queues[base].current = key end
		self.queue_tail = self.queue_tail + 1
		self.queue_order[self.queue_tail] = key
		self.nqueues = self.nqueues + 1
		self:evict()
	end
	return q
end

local function rcpt_of(q, to, orig_to)
	local k = lower(to or "")
	local rc = q.rcpts[k]
	if not rc then
		rc = { to = to, orig_to = orig_to, attempts = {} }
		q.rcpts[k] = rc
		q.rcpt_order[#q.rcpt_order + 1] = k
	end
	if orig_to and not rc.orig_to then rc.orig_to = orig_to end
	return rc
end

-- Takes one parsed record (as reported by a scanner) into the model.
-- Seconds east of UTC named by a stamp, or nil when the stamp has no zone (RFC 3164, ISO
-- without offset). tai64n labels are absolute.
local function stamp_zone(ts)
	if ts:find("^@") or ts:find("[Zz]$") then return 0 end
	local sign, h, m = ts:match("%d([+-])(%d%d):?(%d%d)$")
	if sign and ts:find("^%d%d%d%d%-%d%d%-%d%dT") then
		local z = tonumber(h) * 3600 + tonumber(m) * 60
		return sign == "-" and -z or z
	end
	return nil
end

-- The kind of notification in `QID: sender non-delivery notification: QID2` ("sender
-- non-delivery", "postmaster non-delivery", "sender delay", "sender delivery status").
local function notification_kind(r)
	return (r.text or r.message or ""):match("([%a%- ]-) notification: ") or "notification"
end

function Tracker:add(r)
	-- a record without a zone keeps its stamp's wall time; messages() reads it in its host's zone
	local zl = nil
	if r.time and not self.zone_fixed then
		if r.zoneless then
			zl = r.host or "?"
		else
			-- the zone a host writes its local stamps in: from a stamp that names an offset
			local z = r.timestamp and stamp_zone(r.timestamp)
			if z then self.zones[r.host or "?"] = z end
		end
	end
	if r.family == "postfix" then
		if r.event == "reject" and (r.queue_id == nil or r.queue_id == "NOQUEUE") then
			self.rejects_tail = self.rejects_tail + 1
			self.rejects[self.rejects_tail] = {
				kind = "reject", host = r.host, queue_id = r.queue_id, status = "rejected",
				stage = r.stage, code = r.code, enhanced = r.enhanced, reason = r.reason,
				client = r.client, from = r.from, to = r.to, time = r.time, action = r.action,
				rejected = r.rejected, count = r.repeated or 1, zl = zl,
				lines = { r.line },
			}
			self:evict()
			return
		end
		if not r.queue_id or r.queue_id == "NOQUEUE" then return end
		local q = self:queue(r)
		q.zl = q.zl or zl
		push_line(self, q.lines, r.line)
		if r.time then
			q.first_time = math.min(q.first_time or r.time, r.time)
			q.last_time = math.max(q.last_time or r.time, r.time)
		end
		local ev = r.event
		if ev == "client" then
			q.client = r.client
			q.received = q.received or r.time or true
		elseif ev == "message-id" then q.message_id = r.message_id
		elseif ev == "queued" or ev == "pickup" or ev == "from" then
			q.from = r.from; q.size = r.size or q.size; q.nrcpt = r.nrcpt or q.nrcpt
			if ev == "pickup" then q.received = q.received or r.time or true end
		elseif ev == "removed" then q.removed = true
		elseif ev == "bounce" then
			-- keep every notification, labelled; bounce_id is the sender's non-delivery notice
			local kind = notification_kind(r)
			q.notifications = q.notifications or {}
			q.notifications[#q.notifications + 1] = { kind = kind, id = r.bounce_id }
			if kind == "sender non-delivery" or not q.bounce_id then q.bounce_id = r.bounce_id end
		elseif ev == "expired" then
			q.from = r.from or q.from
			q.expired = r.time or true
		elseif ev == "reject" then
			q.reject = { stage = r.stage, code = r.code, enhanced = r.enhanced, reason = r.reason,
			             time = r.time, action = r.action }
			if r.to then rcpt_of(q, r.to) end
		elseif ev == "delivery" then
			local rc = rcpt_of(q, r.to, r.orig_to)
			if #rc.attempts >= self.max_lines then -- bounded: keep the first and the latest ones
				table.remove(rc.attempts, 2)
				rc.attempts_dropped = (rc.attempts_dropped or 0) + 1
			end
			rc.attempts[#rc.attempts + 1] = {
				time = r.time, status = r.status, dsn = r.dsn, relay = r.relay, reply = r.reply,
				code = r.code, delay = r.delay, delays = r.delays, queued_as = r.queued_as,
				session = r.session, line = r.line,
			}
			if r.queued_as then self:watch(r.queued_as) end
			if r.session then self:watch(r.session) end
		elseif ev == nil then
			self.unrecognised = self.unrecognised + 1 -- kept in q.lines, counted in stats()
		end
	elseif r.family == "dovecot" and r.session then
		local d = self.sessions[r.session]
		if not d then
			d = { kind = "dovecot", host = r.host, session = r.session, lines = {}, status = "seen" }
			self.sessions[r.session] = d
			self.session_tail = self.session_tail + 1
			self.session_order[self.session_tail] = r.session
			self:evict()
		end
		push_line(self, d.lines, r.line)
		d.zl = d.zl or zl
		d.user = d.user or r.user
		d.message_id = d.message_id or r.message_id
		d.time = r.time or d.time
		d.first_time = d.first_time or r.time
		if r.saved == true then
			d.status, d.mailbox = "saved", r.mailbox
		elseif r.saved == false and d.status ~= "saved" then
			d.status, d.mailbox, d.error = "failed", r.mailbox, r.error
		elseif r.error and d.status ~= "saved" then
			d.error = r.error
			if r.event == "rcpt-error" or r.level == "Error" then d.status = "failed" end
		end
	end
end

local function add_all(self, recs, sc)
	self.feeding = sc
	for i = 1, #recs do self:add(recs[i]) end
end

function Tracker:feed(chunk, src)
	if type(chunk) ~= "string" then error("bad argument #1 to 'feed' (string expected)", 2) end
	local sc = self:scanner_for(src)
	add_all(self, sc:feed(chunk), sc)
end

function Tracker:feed_line(line, src)
	if type(line) ~= "string" then error("bad argument #1 to 'feed_line' (string expected)", 2) end
	local sc = self:scanner_for(src)
	add_all(self, sc:line(line), sc)
end

function Tracker:feed_lines(iter, src)
	local sc = self:scanner_for(src)
	for line in iter do add_all(self, sc:line(line), sc) end
end

-- Reads the file in blocks of at most 1 MiB (straight into the C scanner's buffer) so that only
-- one block's reported records exist at a time.
function Tracker:feed_file(path, src)
	if type(path) ~= "string" then error("bad argument #1 to 'feed_file' (string expected)", 2) end
	local sc = self:scanner_for(src)
	local ok, msg, code = sc:open(path)
	if not ok then return nil, msg, code end
	while true do
		local recs, more, c = sc:read()
		if not recs then return nil, path .. ": " .. tostring(more), c end
		add_all(self, recs, sc)
		if not more then break end
	end
	return true
end

function Tracker:flush()
	for _, sc in ipairs(self.scanner_list) do add_all(self, sc:flush(), sc) end
end

function Tracker:stats()
	local st = { queues = self.nqueues, evicted = self.evicted, unrecognised = self.unrecognised,
	             zone_inferred = self.zone_inferred, zone_unknown = self.zone_unknown }
	for _, sc in ipairs(self.scanner_list) do
		for k, v in pairs(sc:stats()) do st[k] = (st[k] or 0) + v end
	end
	return st
end

------------------------------------------------------------------------ messages
local FINAL_RELAYS = { ["local"] = true, virtual = true, dovecot = true }

local function postfix_hop(q, rc)
	local last = rc and rc.attempts[#rc.attempts]
	local hop = {
		kind = "postfix", host = q.host, queue_id = q.queue_id, from = q.from,
		to = rc and rc.to, orig_to = rc and rc.orig_to, client = q.client,
		message_id = q.message_id, arrived = q.first_time, removed = q.removed or false,
		bounce_id = q.bounce_id, notifications = q.notifications, nrcpt = q.nrcpt,
		received = type(q.received) == "number" and q.received or nil,
		attempts = rc and rc.attempts or {}, lines = q.lines,
	}
	if last then
		hop.time, hop.status, hop.dsn, hop.relay = last.time, last.status, last.dsn, last.relay
		hop.reply, hop.code, hop.delay, hop.delays = last.reply, last.code, last.delay, last.delays
		hop.session = last.session
		for i = #rc.attempts, 1, -1 do
			if rc.attempts[i].queued_as then hop.queued_as = rc.attempts[i].queued_as break end
		end
	elseif q.expired then
		hop.status, hop.time = "expired", type(q.expired) == "number" and q.expired or q.last_time
	elseif q.reject then
		hop.status, hop.time, hop.code, hop.reply = "rejected", q.reject.time, q.reject.code, q.reject.reason
		hop.dsn = q.reject.enhanced
	else
		hop.status, hop.time = "queued", q.last_time
	end
	if q.expired and hop.status == "deferred" then hop.status = "expired" end
	return hop
end

-- Postfix's own final word on one hop: "delivered" when the relay is a final one or the next
-- hop answered that it saved the message, else the status of the last attempt.
local function postfix_final(h)
	local st = h.status
	if st == "sent" then
		local relay = h.relay or ""
		if FINAL_RELAYS[relay] or (h.reply and (h.reply:find(" Saved$") or h.reply:find("^delivered"))) then
			st = "delivered"
		end
	end
	return st
end

-- Reads the times of objects stored from stamps without a zone in their host's zone, once
-- the zone is known (a stamp of the same host that names it, from any source).
function Tracker:apply_zones()
	if self.zone_fixed then return end
	local unknown = 0
	local function shift(o, dz)
		for _, k in ipairs { "first_time", "last_time", "time", "received", "expired" } do
			if type(o[k]) == "number" then o[k] = o[k] - dz end
		end
		if o.reject and o.reject.time then o.reject.time = o.reject.time - dz end
		for _, rc in pairs(o.rcpts or {}) do
			for _, a in ipairs(rc.attempts) do
				if a.time then a.time = a.time - dz end
			end
		end
	end
	local function fix(o)
		if type(o) ~= "table" or not o.zl or o.zdone then return end
		local z = self.zones[o.zl]
		if z then
			if z ~= 0 then shift(o, z) end
			o.zdone = true
			self.zone_inferred = self.zone_inferred + 1
		elseif next(self.zones) then
			unknown = unknown + 1 -- other hosts named their zone, this one never did: read as UTC
		end
	end
	for _, q in pairs(self.queues) do fix(q) end
	for _, d in pairs(self.sessions) do fix(d) end
	for i = self.rejects_head, self.rejects_tail do fix(self.rejects[i]) end
	self.zone_unknown = unknown
end

-- Is queue file q one the tracker was asked about (no filter, its sender, or a line naming a
-- watched address)?
function Tracker:wanted_queue(q)
	if next(self.addrs) == nil and next(self.domains) == nil then return true end
	if self:wanted(q.from) then return true end
	for _, line in ipairs(q.lines) do
		local l = lower(line)
		for _, n in ipairs(self.needles) do
			if l:find(lower(n), 1, true) then return true end
		end
	end
	return false
end

local function same_addr(a, b) return a and b and lower(a) == lower(b) end

-- The recipient entry of q that continues recipient `to` (exact, orig_to, or the only one).
local function continue_rcpt(q, to)
	local k = to and lower(to)
	if k and q.rcpts[k] then return q.rcpts[k] end
	for _, rk in ipairs(q.rcpt_order) do
		if same_addr(q.rcpts[rk].orig_to, to) then return q.rcpts[rk] end
	end
	if #q.rcpt_order == 1 then return q.rcpts[q.rcpt_order[1]] end
	return nil
end

function Tracker:messages()
	self:flush()
	self:apply_zones()
	-- index queue files by queue id and message-id; Dovecot sessions by message-id
	local by_qid, used_q, used_d, used_rj = {}, {}, {}, {}
	for _, q in pairs(self.queues) do
		if type(q) == "table" and q.queue_id then
			local l = by_qid[q.queue_id] or {}
			l[#l + 1] = q
			by_qid[q.queue_id] = l
		end
	end
	-- next hop of a queued_as id: the queue file with that id that started closest after t
	local function next_queue(id, t, from_q)
		local best, bestdt
		for _, q in ipairs(by_qid[id] or {}) do
			if q ~= from_q then
				local dt = (q.first_time and t) and math.abs(q.first_time - t) or 0
				if not best or dt < bestdt then best, bestdt = q, dt end
			end
		end
		return best
	end
	-- edges: which queue files / sessions are reached from another hop
	for _, q in pairs(self.queues) do
		for _, rk in ipairs(q.rcpt_order or {}) do
			for _, a in ipairs(q.rcpts[rk].attempts) do
				if a.queued_as then
					local nq = next_queue(a.queued_as, a.time, q)
					if nq then used_q[nq] = true end
				end
				if a.session and self.sessions[a.session] then used_d[self.sessions[a.session]] = true end
			end
		end
	end
	local sessions_by_user = {}
	for _, d in pairs(self.sessions) do
		if d.user then
			local k = lower(d.user)
			local l = sessions_by_user[k] or {}
			l[#l + 1] = d
			sessions_by_user[k] = l
		end
	end
	local rejects_by_rcpt = {}
	for i = self.rejects_head, self.rejects_tail do
		local rj = self.rejects[i]
		if rj.to then
			local k = lower(rj.to)
			local l = rejects_by_rcpt[k] or {}
			l[#l + 1] = rj
			rejects_by_rcpt[k] = l
		end
	end
	-- The Dovecot session that answered one delivery attempt: by the session id in the LMTP
	-- reply, else by message-id and recipient, else by recipient and time (RCPT-time failures
	-- log no message-id).
	local function dovecot_for(q, rc, a)
		if a.session and self.sessions[a.session] then return self.sessions[a.session], "session" end
		if not a.time or (a.relay or "none") == "none" then return nil end
		local best, how, bestdt
		for _, who in ipairs { rc.to, rc.orig_to } do
			for _, d in ipairs(sessions_by_user[lower(who)] or {}) do
				if not used_d[d] and d.time and d.status ~= "seen" then
					local dt = math.abs(d.time - a.time)
					local by = (d.message_id and d.message_id == q.message_id and dt <= 5 and "message_id")
						or (not d.message_id and dt <= 2 and "time")
					if by and (not best or dt < bestdt) then best, how, bestdt = d, by, dt end
				end
			end
		end
		return best, how
	end
	-- A NOQUEUE reject logged by the next hop for this attempt (same recipient, same moment).
	local function reject_for(rc, a)
		if not a.time or (a.relay or "none") == "none" then return nil end
		for _, rj in ipairs(rejects_by_rcpt[lower(rc.to or "")] or {}) do
			if not used_rj[rj] and rj.time and math.abs(rj.time - a.time) <= 2 and
			   (rj.code == nil or a.code == nil or rj.code == a.code) then
				return rj
			end
		end
	end
	local function dovecot_hop(d, how)
		return {
			kind = "dovecot", host = d.host, session = d.session, user = d.user, to = d.user,
			message_id = d.message_id, time = d.time, first_time = d.first_time, status = d.status,
			mailbox = d.mailbox, error = d.error, lines = d.lines, linked_by = how,
		}
	end

	local msgs = {}
	local function finish(m)
		local last = m.hops[#m.hops]
		local where = { before_qmgr = 0, in_qmgr = 0, conn_setup = 0, transmission = 0 }
		local first, lastt
		for _, h in ipairs(m.hops) do
			if h.delays then
				where.before_qmgr = where.before_qmgr + h.delays.before_qmgr
				where.in_qmgr = where.in_qmgr + h.delays.in_qmgr
				where.conn_setup = where.conn_setup + h.delays.conn_setup
				where.transmission = where.transmission + h.delays.transmission
			end
			local t0 = h.arrived or h.first_time or h.time
			if t0 and (not first or t0 < first) then first = t0 end
			if h.time and (not lastt or h.time > lastt) then lastt = h.time end
		end
		m.where, m.first_time, m.last_time = where, first, lastt
		m.duration = (first and lastt) and lastt - first or nil
		local st = last.status
		local prev = m.hops[#m.hops - 1]
		local pst = prev and prev.kind == "postfix" and postfix_final(prev) or nil
		local at = last
		if last.kind == "dovecot" then
			if last.status == "saved" then
				st = "delivered"
				m.mailbox = last.mailbox -- the folder is part of the result: Junk is not INBOX
			elseif last.status == "failed" then
				-- Postfix decided what happens after a Dovecot failure (retry or bounce)
				st = (pst and pst ~= "sent" and pst ~= "delivered") and pst or "failed"
			else
				-- Dovecot logged no outcome we know: Postfix's final status stands
				st, at = pst or "seen", prev or last
			end
		elseif last.kind == "postfix" then
			st = postfix_final(last)
		end
		m.final_status, m.delivered = st, st == "delivered"
		if not m.delivered then
			m.stopped_at = { host = at.host, queue_id = at.queue_id, session = at.session,
			                 status = at.status, reason = at.error or at.reply or at.reason,
			                 reply = at.kind == "dovecot" and prev and prev.reply or nil }
			if at.kind == "postfix" and at.status == "sent" then
				m.stopped_at.reason = "handed to " .. tostring(at.relay) .. ": next hop not in the logs"
			elseif at.kind == "postfix" and at.status == "queued" then
				m.stopped_at.reason = "no delivery attempt logged yet"
			end
		end
		for _, h in ipairs(m.hops) do
			-- sender and message-id from the first hop that logged them
			if m.from == nil and h.from ~= nil then m.from = h.from end
			if m.message_id == nil and h.message_id ~= nil then m.message_id = h.message_id end
			for _, n in ipairs(h.notifications or {}) do
				m.notifications = m.notifications or {}
				m.notifications[#m.notifications + 1] = n
				m.bounces = m.bounces or {}
				m.bounces[n.kind] = m.bounces[n.kind] or n.id
			end
			if h.bounce_id and not m.bounce_id then m.bounce_id = h.bounce_id end
		end
		if m.bounces and m.bounces["sender non-delivery"] then m.bounce_id = m.bounces["sender non-delivery"] end
		msgs[#msgs + 1] = m
	end

	local roots = {}
	for _, q in pairs(self.queues) do
		if not used_q[q] then roots[#roots + 1] = q end
	end
	table.sort(roots, function(a, b) return a.seq < b.seq end)
	for _, root in ipairs(roots) do
		local rkey = tostring(root.host) .. "/" .. tostring(root.key)
		if #root.rcpt_order == 0 and (not root.removed or root.expired or root.reject) and self:wanted_queue(root) then
			-- no delivery attempt logged yet (just arrived, or the agents are stuck): still a message
			finish { from = root.from, message_id = root.message_id, nrcpt = root.nrcpt, not_attempted = true,
			         received = root.received, queue_key = rkey, hops = { postfix_hop(root, nil) } }
		end
		for _, rk in ipairs(root.rcpt_order) do
			local rc = root.rcpts[rk]
			local m = { to = rc.to, from = root.from, message_id = root.message_id, hops = {},
			            received = type(root.received) == "number" and root.received or nil, queue_key = rkey }
			local q, linked, seen, wanted = root, nil, {}, false
			while q and rc and not seen[q] do
				seen[q] = true
				local hop = postfix_hop(q, rc)
				hop.linked_by = linked
				m.hops[#m.hops + 1] = hop
				wanted = wanted or self:wanted(rc.to) or self:wanted(rc.orig_to) or self:wanted(q.from)
				local final_d, final_how
				for i, a in ipairs(rc.attempts) do
					a.dovecot, a.remote_reject = nil, nil
					local d, how = dovecot_for(q, rc, a)
					if d then
						used_d[d] = true
						a.dovecot = { session = d.session, status = d.status, error = d.error,
						              mailbox = d.mailbox, linked_by = how }
						if i == #rc.attempts then final_d, final_how = d, how end
					end
					local rj = reject_for(rc, a)
					if rj then
						used_rj[rj] = true
						a.remote_reject = { host = rj.host, code = rj.code, enhanced = rj.enhanced,
						                    reason = rj.reason, time = rj.time, line = rj.lines[1] }
					end
				end
				if final_d and not hop.queued_as then
					m.hops[#m.hops + 1] = dovecot_hop(final_d, final_how)
					break
				end
				local nq = hop.queued_as and next_queue(hop.queued_as, hop.time, q)
				if not nq then break end
				q, rc, linked = nq, continue_rcpt(nq, rc.to), "queued_as"
			end
			if wanted then finish(m) end
		end
	end
	for i = self.session_head, self.session_tail do
		local d = self.sessions[self.session_order[i]]
		if d and not used_d[d] and d.user and self:wanted(d.user) and d.status ~= "seen" then
			finish { to = d.user, message_id = d.message_id, hops = { dovecot_hop(d) } }
		end
	end
	for i = self.rejects_head, self.rejects_tail do
		local rj = self.rejects[i]
		if not used_rj[rj] and self:wanted_line(rj) then
			local to = rj.to or (rj.stage == "RCPT" and rj.rejected) or nil
			finish { to = to, from = rj.from, count = rj.count, hops = { rj } }
		end
	end
	table.sort(msgs, function(a, b) return (a.first_time or 0) < (b.first_time or 0) end)
	return msgs
end

------------------------------------------------------------------------ counts per domain
-- The columns of maillog.domain_counts, one definition each (mail-stats states them in its help):
M.COLUMNS = { "received", "sent", "deferred", "bounced", "rejected" }
M.COLUMN_HELP = {
	received = "messages that entered the queue inside the window (smtpd client= or pickup), once per message: once in each of its recipient domains' rows and once in the total; a retry (qmgr's `from=... (queue active)` again) is not a new message, nor is a bounce Postfix made",
	sent = "recipients whose final status is sent (handed to the next hop) or delivered",
	deferred = "recipients still deferred at the end of the window: the last attempt in it was deferred, nothing later",
	bounced = "recipients bounced or expired (permanent failure, including returned after the queue lifetime) or refused by Dovecot after Postfix handed over",
	rejected = "refusals at SMTP time: NOQUEUE rejects at any stage (CONNECT, HELO, MAIL, RCPT, DATA; a MAIL-stage reject names no recipient and counts under (unknown)) and queue files rejected by cleanup or a milter; rsyslog's `message repeated N times` counts N",
}

-- maillog.domain_counts(msgs [, {since=, until=}]) -> { rows = {domain -> {column -> n}},
-- order = {domain...}, total = {column -> n}, waiting = n }. msgs is tracker:messages(). A queue
-- file with no delivery attempt yet counts under "(not yet attempted)" (received, and waiting).
-- The status of message m at time t (the end of a window its log goes past): its last
-- delivery attempt up to t, or "queued" when there was none yet.
local function status_at(m, t)
	local st = "queued"
	for _, h in ipairs(m.hops) do
		for _, a in ipairs(h.attempts or {}) do
			if a.time and a.time <= t then st = a.status end
		end
	end
	return st
end

function M.domain_counts(msgs, opts)
	if type(msgs) ~= "table" then error("bad argument #1 to 'domain_counts' (table expected)", 2) end
	opts = opts or {}
	for k in pairs(opts) do
		if k ~= "since" and k ~= "until" then error(("unknown option '%s'"):format(tostring(k)), 2) end
	end
	local since, till = opts.since, opts["until"]
	local rows, order, total, waiting = {}, {}, {}, 0
	for _, c in ipairs(M.COLUMNS) do total[c] = 0 end
	local function row(d)
		local e = rows[d]
		if not e then
			e = {}
			for _, c in ipairs(M.COLUMNS) do e[c] = 0 end
			rows[d] = e
			order[#order + 1] = d
		end
		return e
	end
	local function add(e, col, n)
		e[col] = e[col] + n
		total[col] = total[col] + n
	end
	local recv_row, recv_total = {}, {}
	for _, m in ipairs(msgs) do
		local d
		if m.not_attempted then
			d = "(not yet attempted)"
		else
			d = m.to and tostring(m.to):match("@([^@]+)$")
			d = d and lower(d) or "(unknown)"
		end
		local e = row(d)
		local first = m.hops[1] or {}
		if first.kind == "reject" then
			add(e, "rejected", m.count or 1)
		else
			local r = m.received
			if r and (not since or r >= since) and (not till or r <= till) then
				local k = m.queue_key or m
				recv_row[k] = recv_row[k] or {}
				if not recv_row[k][d] then
					recv_row[k][d] = true
					e.received = e.received + 1
				end
				if not recv_total[k] then
					recv_total[k] = true
					total.received = total.received + 1
				end
			end
			local st = m.final_status
			if till and m.last_time and m.last_time > till then st = status_at(m, till) end
			if st == "sent" or st == "delivered" then add(e, "sent", 1)
			elseif st == "deferred" then add(e, "deferred", 1)
			elseif st == "bounced" or st == "expired" or st == "failed" then add(e, "bounced", 1)
			elseif st == "rejected" then add(e, "rejected", 1)
			elseif st == "queued" then waiting = waiting + 1 end
		end
	end
	table.sort(order)
	return { rows = rows, order = order, total = total, waiting = waiting }
end

return M
