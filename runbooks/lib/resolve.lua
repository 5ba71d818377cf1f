-- runbooks/lib/resolve.lua: how one Postfix hop resolves a recipient address, as data.
--
-- Pure functions over what `postconf -x` and `postmap -q` answered (no I/O, no ctx), so
-- tests/lua/resolve.t runs them offline and undelivered.lua only does the asking:
--   PARAMS                       the parameters a hop's resolution depends on (one postconf call)
--   keys(addr, delims)           every lookup key Postfix may try for the address (full, +tag
--                                stripped, user@, domain, @domain catch-all, ...)
--   tables(p)                    the lookup tables of a hop that can change or refuse the
--                                address: {param=, map=, role=} from virtual_alias_maps,
--                                canonical maps, transport_maps, relay_recipient_maps and the
--                                check_recipient_access tables of the restrictions
--   classes(p, domain, found)    the address classes the domain is in (found: domain-list
--                                tables that answered for the domain)
--   chain(p, addr, answers)      address -> rewritten address(es) -> transport -> next hop,
--                                with every lookup as a step; answers[map][key] = value | false
--                                (false: not found); a map missing from answers could not be
--                                asked, and the chain says so (never "not found")
-- Postfix's own lookup order (virtual(5), canonical(5), transport(5), access(5)) decides which
-- key wins; the values come from postmap -q itself, map types are never re-implemented.
-- Depends on: nothing.
local M = {}

M.PARAMS = {
  "mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains",
  "virtual_alias_maps", "canonical_maps", "recipient_canonical_maps", "transport_maps",
  "relay_recipient_maps", "smtpd_recipient_restrictions", "smtpd_relay_restrictions",
  "recipient_delimiter", "relay_transport", "virtual_transport", "local_transport", "default_transport",
  "message_size_limit", "smtp_tls_security_level", "lmtp_tls_security_level",
}

local function split(v)
  local out = {}
  for item in tostring(v or ""):gmatch("[^%s,]+") do out[#out + 1] = item end
  return out
end
M.split = split

local function lower(s) return tostring(s or ""):lower() end

-- strip(addr, delims) -> the address without its +tag, or nil when it has none. Postfix splits
-- at the FIRST delimiter character of the local part (recipient_delimiter may list several).
function M.strip(addr, delims)
  local lp, dom = tostring(addr):match("^(.*)@([^@]*)$")
  if not lp or not delims or delims == "" then return nil end
  for i = 1, #lp do
    if delims:find(lp:sub(i, i), 1, true) and i > 1 then return lp:sub(1, i - 1) .. "@" .. dom end
  end
  return nil
end

-- keys(addr, delims) -> ordered list of distinct lookup keys (lower case, as Postfix folds them)
function M.keys(addr, delims)
  addr = lower(addr)
  local lp, dom = addr:match("^(.*)@([^@]*)$")
  local out, seen = {}, {}
  local function add(k) if k and k ~= "" and not seen[k] then seen[k] = true; out[#out + 1] = k end end
  local base = M.strip(addr, delims)
  add(addr); add(base)
  add(dom); add("@" .. (dom or "")); add("*")
  add((lp or "") .. "@"); if base then add(base:match("^(.*@)")) end
  return out
end

-- tables(p) -> { {param=, map=, role=} ... }: every lookup table that can change or refuse the
-- address. A restriction's check_recipient_access table is role "access".
function M.tables(p)
  local out, seen = {}, {}
  local function add(param, map, role)
    local key = role .. " " .. map
    if map:find("^%a[%w_]*:") and not seen[key] then seen[key] = true; out[#out + 1] = { param = param, map = map, role = role } end
  end
  for _, m in ipairs(split(p.recipient_canonical_maps)) do add("recipient_canonical_maps", m, "canonical") end
  for _, m in ipairs(split(p.canonical_maps)) do add("canonical_maps", m, "canonical") end
  for _, m in ipairs(split(p.virtual_alias_maps)) do add("virtual_alias_maps", m, "alias") end
  for _, m in ipairs(split(p.transport_maps)) do add("transport_maps", m, "transport") end
  for _, m in ipairs(split(p.relay_recipient_maps)) do add("relay_recipient_maps", m, "relay_recipient") end
  for _, param in ipairs { "smtpd_recipient_restrictions", "smtpd_relay_restrictions" } do
    local words = split(p[param])
    for i, w in ipairs(words) do
      if w == "check_recipient_access" and words[i + 1] then add(param, words[i + 1], "access") end
    end
  end
  -- domain lists that name a table (relay_domains = hash:/etc/postfix/relay_domains)
  for _, param in ipairs { "mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains" } do
    for _, m in ipairs(split(p[param])) do add(param, m, "domains") end
  end
  return out
end

local CLASS_PARAMS = { "mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains" }
M.CLASS_PARAMS = CLASS_PARAMS

-- classes(p, domain, answers) -> list of the class parameters that list the domain, and the
-- list of class parameters that could not be decided (a table that could not be asked).
-- answers[map][key] as in chain(); p values are postconf -x (expanded).
function M.classes(p, domain, answers)
  domain = lower(domain)
  local found, undecided = {}, {}
  for _, param in ipairs(CLASS_PARAMS) do
    local hit, unsure = false, false
    for _, item in ipairs(split(p[param])) do
      if item:find("^%a[%w_]*:") then
        local a = answers and answers[item]
        if a == nil then unsure = true
        elseif a[domain] then hit = true end
      elseif lower(item) == domain then
        hit = true
      end
    end
    if hit then found[#found + 1] = param elseif unsure then undecided[#undecided + 1] = param end
  end
  return found, undecided
end

-- first(answers, map, keys, missing) -> key, value | nil; true as third value when the map could
-- not be asked. A key that was not asked (answers[map][key] == nil, not false) goes to missing
-- (map -> {key...}): the caller asks again; until then it counts as not asked, never "not found".
local function first(answers, map, keys, missing)
  local a = answers[map]
  if a == nil then return nil, nil, true end
  local unasked = false
  for _, k in ipairs(keys) do
    local v = a[k]
    if v then return k, v end
    if v == nil then
      unasked = true
      if missing then missing[map] = missing[map] or {}; missing[map][#missing[map] + 1] = k end
    end
  end
  return nil, nil, unasked or nil
end

-- list(...) -> the non-nil arguments in order
function M.list(...)
  local out = {}
  for i = 1, select("#", ...) do local v = select(i, ...); if v ~= nil then out[#out + 1] = v end end
  return out
end

local REFUSE = { reject = true, defer = true, defer_if_permit = true, defer_if_reject = true }

-- an access(5) action that refuses: REJECT, DEFER, 4xx/5xx text
local function refuses(v)
  local w = lower(v):match("^(%S+)") or ""
  return REFUSE[w] or w:match("^[45]%d%d$") ~= nil
end

-- chain(p, addr, answers, opts) -> { steps = { {table=, param=, key=, value=, found=, unknown=,
--   note=} ... }, final = {addr...}, rewritten = bool, rewritten_by = step, catchall = bool,
--   refused = step | nil, transport = "lmtp:[...]:2525", transport_from = "relay_transport" |
--   map, class = {...}, unknown = {map...}, missing = {map = {key...}}, text = "a -> b -> ..." }
-- missing: keys a rewritten address needs that were not asked yet (ask them, call chain again).
function M.chain(p, addr, answers)
  addr = lower(addr)
  local delims = p.recipient_delimiter or ""
  local lp, dom = addr:match("^(.*)@([^@]*)$")
  local base = M.strip(addr, delims)
  local res = { steps = {}, final = { addr }, unknown = {}, addr = addr, missing = {} }
  local function step(s) res.steps[#res.steps + 1] = s; if s.unknown then res.unknown[#res.unknown + 1] = s.table end end
  local tabs = M.tables(p)
  local current = addr
  -- 1. canonical maps (recipient_canonical_maps first): user@domain, user@ (no: local only), @domain
  for _, t in ipairs(tabs) do
    if t.role == "canonical" then
      local k, v, unk = first(answers, t.map, M.list(current, M.strip(current, delims), "@" .. (current:match("@(.*)$") or dom)), res.missing)
      step { table = t.map, param = t.param, key = k or current, value = v, found = k ~= nil, unknown = unk }
      if v and lower(v) ~= current then
        if v:sub(1, 1) == "@" then v = (lp .. v) end
        current = lower(v)
        res.canonical = current
      end
    end
  end
  -- 2. virtual aliases: user+ext@domain, user@domain, @domain (virtual(5)); the first table that
  -- answers wins; an answer naming the address itself is an identity alias (no change)
  local alias_done = false
  for _, t in ipairs(tabs) do
    if t.role == "alias" and not alias_done then
      local keys = { current }
      local cbase = M.strip(current, delims)
      if cbase then keys[#keys + 1] = cbase end
      keys[#keys + 1] = "@" .. (current:match("@(.*)$") or dom)
      local k, v, unk = first(answers, t.map, keys, res.missing)
      step { table = t.map, param = t.param, key = k or current, value = v, found = k ~= nil, unknown = unk,
             note = k and k:sub(1, 1) == "@" and "catch-all" or nil }
      if k then
        alias_done = true
        local targets = split(v)
        local same = #targets == 1 and (lower(targets[1]) == current or (cbase and lower(targets[1]) == cbase))
        if not same then
          res.rewritten, res.rewritten_by = true, res.steps[#res.steps]
          res.catchall = k:sub(1, 1) == "@"
          res.final = {}
          for i, x in ipairs(targets) do res.final[i] = lower(x) end
        end
      end
    end
  end
  local target = res.final[1] or current
  local tdom = target:match("@(.*)$") or dom
  -- 3. the address class of the (final) domain and its default transport
  local classes = M.classes(p, tdom, answers)
  res.class = classes
  local class = classes[1]
  local default_t = class == "mydestination" and p.local_transport or class == "virtual_mailbox_domains" and p.virtual_transport
    or class == "relay_domains" and p.relay_transport or class == "virtual_alias_domains" and "(virtual alias domain: rewritten or refused)"
    or p.default_transport
  res.transport, res.transport_from = default_t, class and (class == "mydestination" and "local_transport"
    or class == "virtual_mailbox_domains" and "virtual_transport" or class == "relay_domains" and "relay_transport"
    or "virtual_alias_domains") or "default_transport"
  -- 4. transport_maps: user+ext@domain, user@domain, domain, * (transport(5))
  for _, t in ipairs(tabs) do
    if t.role == "transport" then
      local tb = M.strip(target, delims)
      local keys = { target }
      if tb then keys[#keys + 1] = tb end
      keys[#keys + 1] = tdom; keys[#keys + 1] = "*"
      local k, v, unk = first(answers, t.map, keys, res.missing)
      step { table = t.map, param = t.param, key = k or target, value = v, found = k ~= nil, unknown = unk }
      if v and v ~= "" then
        local kind, nexthop = v:match("^([^:]*):?(.*)$")
        -- "smtp:" (empty next hop) keeps the class's next hop; ":[host]" keeps the transport
        if kind == "" then res.transport = (res.transport:match("^([^:]+)") or "smtp") .. ":" .. nexthop
        elseif nexthop == "" then res.transport = kind .. ":" .. (res.transport:match("^[^:]+:(.*)$") or "")
        else res.transport = v end
        res.transport_from = t.map
        break
      end
    end
  end
  -- 5. what can refuse the address here: relay_recipient_maps (relay domains), access tables
  if class == "relay_domains" then
    for _, t in ipairs(tabs) do
      if t.role == "relay_recipient" then
        local k, v, unk = first(answers, t.map, M.list(addr, base, "@" .. dom), res.missing)
        step { table = t.map, param = t.param, key = k or addr, value = v, found = k ~= nil, unknown = unk }
        if not k and not unk then
          res.refused = res.refused or { table = t.map, param = t.param, text = "User unknown in relay recipient table" }
        end
      end
    end
  end
  for _, t in ipairs(tabs) do
    if t.role == "access" then
      local keys = { addr }
      if base then keys[#keys + 1] = base end
      keys[#keys + 1] = dom
      keys[#keys + 1] = lp .. "@"
      local k, v, unk = first(answers, t.map, keys, res.missing)
      step { table = t.map, param = t.param, key = k or addr, value = v, found = k ~= nil, unknown = unk }
      if v and refuses(v) then res.refused = res.refused or { table = t.map, param = t.param, key = k, text = v } end
    end
  end
  local parts = { addr }
  if res.canonical then parts[#parts + 1] = res.canonical .. " (canonical)" end
  if res.rewritten then parts[#parts + 1] = table.concat(res.final, ", ") .. (res.catchall and " (catch-all)" or " (alias)") end
  parts[#parts + 1] = tostring(res.transport) .. " (" .. tostring(res.transport_from) .. ")"
  if res.refused then parts[#parts + 1] = "REFUSED by " .. res.refused.table .. ": " .. res.refused.text end
  res.text = table.concat(parts, " -> ")
  return res
end

-- tls_requires(level) -> true when a Postfix *_tls_security_level makes TLS mandatory
function M.tls_requires(level)
  level = lower(level)
  return level == "encrypt" or level == "verify" or level == "secure" or level == "dane-only" or level == "fingerprint"
end

-- size(v) -> number of bytes (0 = no limit) | nil
function M.size(v)
  local n = tonumber(tostring(v or ""):match("^%s*(%d+)%s*$"))
  return n
end

return M
