-- runbook.prim.dns: DNS lookups against the inventory's DNS server.
--
--   ctx:dig(name, type, opts) -> result | nil, msg, code                        (read)
--     type: "A" (default) "AAAA" "MX" "TXT" "PTR" (an IP becomes its arpa name) "CNAME" "NS" "SOA"
--     opts: {server=IP, port=, timeout=seconds, tcp=bool, retries=n} override inventory `dns:`
--     result: runbook.dns's table: rcode, nodata, answers={ {name, type, ttl, data, address |
--             preference+exchange | text+strings | target} }, authority, flags, server, port, ms
--     codes: nxdomain servfail refused timeout protocol io
--   ctx:dig_addresses(name, opts) -> {ip...} | nil, msg, code   A records (CNAMEs followed by
--     the server), for wrappers that must turn a name into an address without the system resolver
--
-- With no `dns.server` in the inventory the system resolver's servers (resolv.conf) are used:
-- production only; the lab and tests always name a server. Trace summary, e.g.
-- `MX example.test -> 10 mx.example.test. (ttl 300)`; --trace shows the whole reply as dig would.
-- Depends on: runbook.dns (C), runbook.call.
local dns = require "runbook.dns"
local call = require "runbook.call"

local M = {}

local OPTS = { server = true, port = true, timeout = true, tcp = true, retries = true }

local function check_opts(opts, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("bad argument #3 to '%s' (table expected)"):format(fname), 3) end
  for k in pairs(opts) do
    if not OPTS[k] then error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
  end
  return opts
end

-- One line per record, as dig prints the answer section.
local function render(res)
  local out = {}
  local function section(title, list)
    if #list == 0 then return end
    out[#out + 1] = ";; " .. title
    for _, rr in ipairs(list) do
      out[#out + 1] = ("%s\t%d\t%s\t%s\t%s"):format(rr.name, rr.ttl, rr.class, rr.type, rr.data)
    end
  end
  out[#out + 1] = (";; %s %s @%s#%d: %s%s, %.1f ms%s"):format(res.qtype, res.qname, res.server,
    res.port, res.rcode, res.nodata and " (no data)" or "", res.ms, res.tcp and ", TCP" or "")
  section("ANSWER", res.answers)
  section("AUTHORITY", res.authority)
  section("ADDITIONAL", res.additional)
  return table.concat(out, "\n")
end
M.render = render

local function summary(res)
  local parts = {}
  for _, rr in ipairs(res.answers) do
    local v = rr.exchange and ("%d %s"):format(rr.preference, rr.exchange)
      or rr.text and ("%q"):format(rr.text) or rr.address or rr.target or rr.data
    if rr.type ~= res.qtype then v = rr.type .. " " .. v end
    parts[#parts + 1] = ("%s (ttl %d)"):format(v, rr.ttl)
  end
  local what = #parts > 0 and table.concat(parts, ", ") or ""
  if res.nodata then
    what = (what ~= "" and what .. "; " or "") .. ("no %s record (NOERROR)"):format(res.qtype)
  end
  return ("%s %s -> %s"):format(res.qtype, res.qname:gsub("%.$", ""), what)
end
M.summary = summary

function M.install(Ctx)
  function Ctx:dig(name, rtype, opts)
    if type(name) ~= "string" then error("bad argument #1 to 'dig' (string expected)", 2) end
    if rtype ~= nil and type(rtype) ~= "string" then error("bad argument #2 to 'dig' (string expected)", 2) end
    opts = check_opts(opts, "dig")
    rtype = (rtype or "A"):upper()
    local inv = self.inventory.dns or {}
    local q = {
      name = name, type = rtype,
      server = opts.server or inv.server,
      port = opts.port or inv.port or 53,
      timeout = self:timeout(opts.timeout or inv.timeout),
      tcp = opts.tcp, retries = opts.retries,
    }
    local where = q.server and ("@%s -p %d"):format(q.server, q.port) or "(system resolver)"
    local spec
    spec = {
      family = "dns", op = "query", host = "local", class = "read",
      summary_args = { rtype, name, q.server and ("@" .. q.server) or "@system" },
      detail = ("dig %s%s %s %s"):format(where, q.tcp and " +tcp" or "", rtype, name),
      fn = function()
        local res, msg, code = dns.query(q)
        -- the trace's detail is the reply itself, as dig shows it
        spec.detail = spec.detail .. "\n" .. (res and render(res) or (";; " .. msg))
        return res, msg, code
      end,
      summarize = summary,
    }
    return call(self, spec)
  end

  function Ctx:dig_addresses(name, opts)
    local res, msg, code = self:dig(name, "A", opts)
    if not res then return nil, msg, code end
    local out = {}
    for _, rr in ipairs(res.answers) do
      if rr.type == "A" then out[#out + 1] = rr.address end
    end
    if #out == 0 then return nil, ("%s has no A record"):format(name), "nodata" end
    return out
  end
end

return M
