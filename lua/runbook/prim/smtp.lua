-- runbook.prim.smtp: SMTP/LMTP dialogues and TCP reachability from the machine runbook runs on.
--
--   ctx:smtp_probe(opts) -> result | nil, msg, code
--     opts: host = inventory host (its `address`) | IP | DNS name (resolved with ctx:dig through
--           the inventory's DNS server, never the system resolver); port (25, LMTP 24); lmtp;
--           helo; from ("" = null sender); rcpt = addr | {addr...}; stop = "connect" | "helo" |
--           "mail" | "rcpt" (DEFAULT) | "data"; starttls = "auto" | "required" | "never";
--           tls_verify, tls_name, tls_ca; bind = local IP; timeout (seconds per reply);
--           message (body), subject, probe_id (default: the run id)
--     result: runbook.smtp.probe's table (ok, last_stage, transcript, stages, queued_as,
--             lmtp_session, message_id, probe_id, tls, ms)
--     codes: refused timeout unreachable protocol tls io; dryrun for an unapplied send
--
--   READ OR WRITE. A probe that stops at or before RCPT is a READ (op smtp.probe): it leaves
--   nothing behind but log lines. A probe with stop = "data" delivers a real message into a real
--   mailbox, so it is a WRITE (op smtp.send) through the gate: without --apply it does nothing
--   and the dry run shows the exact envelope and headers it would send (Message-ID, Date and
--   X-Runbook-Probe are fixed before the gate, so the applied message is the one shown). The
--   default stop is "rcpt": sending must be asked for.
--
--   ctx:tcp_check_local(addr, port, opts) -> {ms, peer, local} | nil, msg, code        (read)
--     addr: IP | inventory host | DNS name (as above); opts: {bind=IP, timeout=seconds}
--     codes: refused timeout unreachable io. (ctx:tcp_check(from_host, ...) in prim/host.lua
--     dispatches here for local hosts.)
-- Depends on: runbook.smtp, runbook.net (C), runbook.call, runbook.core, prim/dns (ctx:dig).
local smtp = require "runbook.smtp"
local net = require "runbook.net"
local call = require "runbook.call"
local core = require "runbook.core"

local M = {}

local PROBE_OPTS = {
  host = true, port = true, lmtp = true, helo = true, from = true, rcpt = true, stop = true,
  starttls = true, tls_verify = true, tls_name = true, tls_ca = true, bind = true,
  timeout = true, message = true, subject = true, probe_id = true,
}
local READ_STOPS = { connect = true, helo = true, mail = true, rcpt = true }

local function is_ip(s)
  return type(s) == "string" and (s:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or s:find(":", 1, true) ~= nil)
end

-- addr -> IP: an IP as is, an inventory host's address, or the A record of a DNS name (looked up
-- through ctx:dig, so against the inventory's DNS server and traced). Returns ip | nil, msg, code.
local function resolve(ctx, addr, fname)
  if type(addr) ~= "string" or addr == "" then
    error(("%s: host must be a string"):format(fname), 3)
  end
  if is_ip(addr) then return addr end
  local h = ctx.inventory.hosts and ctx.inventory.hosts[addr]
  if h then
    if not h.address then
      error(("%s: inventory host '%s' has no address"):format(fname, addr), 3)
    end
    if is_ip(h.address) then return h.address end
    addr = h.address
  end
  local ips, msg, code = ctx:dig_addresses(addr)
  if not ips then return nil, ("cannot resolve %s: %s"):format(addr, msg), code end
  return ips[1]
end
M.resolve = resolve

-- The transcript as a reader wants it in --trace: "S: 220 ...", "C: EHLO ...".
local function render(res)
  local out = {}
  for _, e in ipairs(res.transcript or {}) do
    local prefix = ("%8.1f ms %s: "):format(e.t, e.dir)
    out[#out + 1] = prefix .. e.text:gsub("\r?\n", "\n" .. (" "):rep(#prefix))
  end
  return table.concat(out, "\n")
end
M.render = render

local function summary(res, stop)
  local st = res.stages or {}
  local parts = {}
  local function add(label, s) if s then parts[#parts + 1] = ("%s %s"):format(label, s.code or "ok") end end
  add("greeting", st.greeting)
  add("helo", st.helo)
  if st.starttls then parts[#parts + 1] = "starttls " .. (res.tls and (st.starttls.version or "on") or tostring(st.starttls.code)) end
  add("mail", st.mail)
  for _, r in ipairs(st.rcpt or {}) do parts[#parts + 1] = ("rcpt %s %d"):format(r.addr, r.code) end
  add("data", st.data)
  local s = table.concat(parts, ", ")
  if res.queued_as then s = s .. " queued as " .. res.queued_as end
  return ("%s (%s%s)"):format(res.ok and "accepted" or "REJECTED at " .. (res.last_stage or stop), s,
    res.tls and ", TLS" or "")
end

function M.install(Ctx)
  function Ctx:smtp_probe(opts)
    if type(opts) ~= "table" then error("bad argument #1 to 'smtp_probe' (table expected)", 2) end
    for k in pairs(opts) do
      if not PROBE_OPTS[k] then error(("smtp_probe: unknown option '%s'"):format(tostring(k)), 2) end
    end
    local stop = opts.stop or "rcpt"
    if opts.host == nil then error("smtp_probe: option 'host' is required", 2) end
    local ip, rmsg, rcode = resolve(self, opts.host, "smtp_probe")
    if not ip then return nil, rmsg, rcode end
    local lmtp = opts.lmtp and true or false
    local q = {
      host = ip, port = opts.port or (lmtp and 24 or 25), lmtp = lmtp, helo = opts.helo,
      from = opts.from, rcpt = opts.rcpt, stop = stop, starttls = opts.starttls,
      tls_verify = opts.tls_verify, tls_name = opts.tls_name, tls_ca = opts.tls_ca,
      bind = opts.bind, timeout = self:timeout(opts.timeout), message = opts.message,
      subject = opts.subject,
    }
    local rcpts = type(q.rcpt) == "table" and q.rcpt or { q.rcpt }
    local where = ("%s:%d%s"):format(ip, q.port, opts.host ~= ip and (" (" .. opts.host .. ")") or "")
    local envelope = ("%s %s from=<%s> rcpt=<%s>%s"):format(lmtp and "LMTP" or "SMTP", where,
      q.from or "", table.concat(rcpts, ">,<"), q.bind and (" bind=" .. q.bind) or "")
    local spec
    spec = {
      family = "smtp", host = "local",
      summary_args = { where, "stop=" .. stop, table.concat(rcpts, ",") },
      summarize = function(res) return summary(res, stop) end,
    }
    local function run()
      local res, msg, code, partial = smtp.probe(q)
      spec.detail = spec.detail .. "\n" .. render(res or partial or {})
      if not res then spec.detail = spec.detail .. "\n;; " .. msg end
      return res, msg, code
    end
    if READ_STOPS[stop] then
      spec.op, spec.class = "probe", "read"
      spec.detail = envelope .. " stop=" .. stop
      spec.fn = run
    else
      -- A delivery: fix every generated header now so that the dry run shows the very message
      -- that --apply would send.
      q.probe_id = opts.probe_id or self.run_id
      q.message_id = ("<runbook-probe.%s.%s@%s>"):format(q.probe_id, core.random_hex(8), q.helo or "runbook.test")
      q.date = os.date("!%a, %d %b %Y %H:%M:%S +0000")
      local message = smtp.format_message {
        from = q.from, rcpt = q.rcpt, helo = q.helo, subject = q.subject, message_id = q.message_id,
        probe_id = q.probe_id, date = q.date, message = q.message,
      }
      spec.op, spec.class = "send", "write"
      spec.target = ("mailbox of %s"):format(table.concat(rcpts, ", "))
      spec.detail = envelope .. "\n" .. message:gsub("\r\n", "\n")
      spec.after = { message_id = q.message_id, probe_id = q.probe_id }
      spec.fn = run
    end
    return call(self, spec)
  end

  function Ctx:tcp_check_local(addr, port, opts)
    if math.type(port) ~= "integer" then error("bad argument #2 to 'tcp_check_local' (integer port expected)", 2) end
    if opts ~= nil and type(opts) ~= "table" then error("bad argument #3 to 'tcp_check_local' (table expected)", 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "bind" and k ~= "timeout" then error(("tcp_check_local: unknown option '%s'"):format(tostring(k)), 2) end
    end
    local ip, rmsg, rcode = resolve(self, addr, "tcp_check_local")
    if not ip then return nil, rmsg, rcode end
    local q = { host = ip, port = port, bind = opts.bind, timeout = self:timeout(opts.timeout or self:connect_timeout()) }
    return call(self, {
      family = "net", op = "tcp_check", host = "local", class = "read",
      summary_args = { ("%s:%d"):format(ip, port) },
      detail = ("TCP connect %s:%d%s timeout %.1fs"):format(ip, port, q.bind and (" from " .. q.bind) or "", q.timeout),
      fn = function() return net.tcp_check(q) end,
      summarize = function(res) return ("%s open (%.1f ms)"):format(res.peer, res.ms) end,
    })
  end
end

return M
