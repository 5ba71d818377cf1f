-- runbook.args: runbook argument declarations and value validation.
--
-- A runbook declares   args = { { name = "addr", type = "email", required = true, help = "..." }, ... }
-- (or a name -> spec map). Types: string, integer, boolean, email, domain, duration, choice
-- (with choices = {...}), queue_id, path, service (HOST/SERVICE: both names must be in the
-- inventory, which cli.lua checks before anything runs). Every value is checked before anything runs; a
-- value with control characters (newlines included) or over MAX_LEN bytes is refused whatever
-- its type, so nothing hostile reaches a primitive through an argument.
local M = {}

M.MAX_LEN = 1024
M.TYPES = { string = true, integer = true, boolean = true, email = true, domain = true,
            duration = true, choice = true, queue_id = true, path = true, service = true }
local SPEC_KEYS = { name = true, type = true, required = true, default = true, help = true,
                    choices = true, min = true, max = true, pattern = true, secret = true,
                    example = true }
-- Engine options: a runbook may not declare these names.
M.RESERVED = { inventory = true, apply = true, yes = true, format = true, trace = true,
               deadline = true, report = true, help = true, color = true, version = true,
               ["memory-limit"] = true }

local function valid_label(l)
  return #l >= 1 and #l <= 63 and (l:match("^%w$") or l:match("^%w[%w-]*%w$")) ~= nil
end

function M.valid_domain(d)
  if type(d) ~= "string" or #d > 253 or not d:find(".", 1, true) then return false end
  d = d:gsub("%.$", "")
  for label in (d .. "."):gmatch("([^.]*)%.") do
    if not valid_label(label) then return false end
  end
  return d:match("%.(%a[%w-]*)$") ~= nil   -- the top-level label is not all digits
end

-- The local part: dot-atoms of the conservative RFC 5321 set without quotes or shell metachars.
function M.valid_email(s)
  if type(s) ~= "string" or #s > 254 then return false end
  local localpart, domain = s:match("^([^@]+)@([^@]+)$")
  if not localpart or #localpart > 64 then return false end
  if not localpart:match("^[%w!#%%&*+/=?^_{|}~.-]+$") then return false end
  if localpart:find("^%.") or localpart:find("%.$") or localpart:find("..", 1, true) then return false end
  return M.valid_domain(domain)
end

local function parse_duration(v)
  return require("runbook.inventory").parse_duration(v)
end

-- check_value(spec, raw) -> value | nil, message
function M.check_value(spec, raw)
  local name = spec.name
  if type(raw) == "boolean" then
    if spec.type == "boolean" then return raw end
    return nil, ("--%s needs a value"):format(name)
  end
  raw = tostring(raw)
  if #raw > M.MAX_LEN then
    return nil, ("--%s: value is %d bytes; at most %d are accepted"):format(name, #raw, M.MAX_LEN)
  end
  if raw:find("[%c]") then
    return nil, ("--%s: control characters (newlines, tabs, NUL) are not allowed in a value"):format(name)
  end
  local t = spec.type
  if raw == "" and t ~= "string" then
    return nil, ("--%s: empty value"):format(name)
  end
  if t == "string" or t == "path" then
    if spec.pattern and not raw:match(spec.pattern) then
      return nil, ("--%s: %q does not match %s"):format(name, raw, spec.pattern)
    end
    return raw
  elseif t == "email" then
    if not M.valid_email(raw) then
      return nil, ("--%s: %q is not a mail address like user@example.jp"):format(name, raw)
    end
    local l, d = raw:match("^(.*)@(.*)$")
    return l .. "@" .. d:lower()
  elseif t == "domain" then
    if not M.valid_domain(raw) then return nil, ("--%s: %q is not a domain name"):format(name, raw) end
    return (raw:lower():gsub("%.$", ""))
  elseif t == "integer" then
    local n = raw:match("^[+-]?%d+$") and math.tointeger(tonumber(raw))
    if not n then return nil, ("--%s: %q is not an integer"):format(name, raw) end
    if spec.min and n < spec.min then return nil, ("--%s: at least %d"):format(name, spec.min) end
    if spec.max and n > spec.max then return nil, ("--%s: at most %d"):format(name, spec.max) end
    return n
  elseif t == "boolean" then
    local b = ({ ["true"] = true, yes = true, ["1"] = true, ["false"] = false, no = false, ["0"] = false })[raw]
    if b == nil then return nil, ("--%s: expected true or false"):format(name) end
    return b
  elseif t == "duration" then
    local d = parse_duration(raw)
    if not d then return nil, ("--%s: %q is not a duration like 30m, 1h, 2d"):format(name, raw) end
    return d
  elseif t == "choice" then
    for _, c in ipairs(spec.choices) do if c == raw then return raw end end
    return nil, ("--%s: %q is not one of: %s"):format(name, raw, table.concat(spec.choices, ", "))
  elseif t == "service" then
    local h, svc = raw:match("^([%w_][%w_.-]*)/([%w_][%w_.-]*)$")
    if not h or h:find("..", 1, true) or svc:find("..", 1, true) then
      return nil, ("--%s: %q is not HOST/SERVICE (inventory names, e.g. ec2/postfix)"):format(name, raw)
    end
    return raw
  elseif t == "queue_id" then
    if not raw:match("^[%w]+$") or #raw > 32 then
      return nil, ("--%s: %q is not a Postfix queue id"):format(name, raw)
    end
    return raw
  end
  return nil, ("--%s: unknown type %s"):format(name, tostring(t))
end

local function plain(v) return type(v) == "table" and debug.getmetatable(v) == nil end

-- copy_spec(s) -> a fresh spec of plain values | nil, message. The runbook's own tables never
-- reach the engine: a metamethod would run later, outside every deadline.
local function copy_spec(s, where)
  if not plain(s) then return nil, where .. " must be a plain table (no metatable)" end
  local c = {}
  for k, v in next, s do
    if not SPEC_KEYS[k] then return nil, ("argument %s: unknown key '%s'"):format(tostring(s.name), tostring(k)) end
    if type(v) == "table" then
      if k ~= "choices" or not plain(v) then return nil, ("argument %s: '%s' must be a plain value"):format(tostring(s.name), k) end
      local list = {}
      for i, x in next, v do
        if math.type(i) ~= "integer" or type(x) ~= "string" then
          return nil, ("argument %s: choices must be a list of strings"):format(tostring(s.name))
        end
        list[i] = x
      end
      v = list
    elseif type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
      return nil, ("argument %s: '%s' must be a plain value"):format(tostring(s.name), k)
    end
    c[k] = v
  end
  return c
end

-- normalize(decl) -> ordered list of specs | nil, message (a declaration error)
function M.normalize(decl)
  local list = {}
  if decl == nil then return list end
  if type(decl) ~= "table" then return nil, "args must be a table" end
  if not plain(decl) then return nil, "args must be a plain table (no metatable)" end
  if #decl > 0 then
    for i, s in ipairs(decl) do
      if type(s) ~= "table" then return nil, ("args[%d] must be a table"):format(i) end
      local c, err = copy_spec(s, ("args[%d]"):format(i))
      if not c then return nil, err end
      list[#list + 1] = c
    end
  else
    local names = {}
    for k in next, decl do names[#names + 1] = k end
    for _, k in ipairs(names) do
      if type(k) ~= "string" then return nil, "args: names must be strings" end
    end
    table.sort(names)
    for _, k in ipairs(names) do
      local s = decl[k]
      if type(s) ~= "table" then return nil, ("args.%s must be a table"):format(tostring(k)) end
      if s.name and s.name ~= k then return nil, ("args.%s has name %q"):format(k, tostring(s.name)) end
      local c, err = copy_spec(s, "args." .. k)
      if not c then return nil, err end
      c.name = k
      list[#list + 1] = c
    end
  end
  local seen = {}
  for _, s in ipairs(list) do
    if type(s.name) ~= "string" or not s.name:match("^[%a][%w_-]*$") then
      return nil, ("argument name %q must be a word"):format(tostring(s.name))
    end
    if M.RESERVED[s.name] then return nil, ("argument --%s clashes with an engine option"):format(s.name) end
    if seen[s.name] then return nil, ("argument --%s declared twice"):format(s.name) end
    seen[s.name] = true
    s.type = s.type or "string"
    if not M.TYPES[s.type] then return nil, ("argument --%s: unknown type '%s'"):format(s.name, tostring(s.type)) end
    if s.type == "choice" and (type(s.choices) ~= "table" or #s.choices == 0) then
      return nil, ("argument --%s: a choice needs choices = {...}"):format(s.name)
    end
    if type(s.help) ~= "string" then return nil, ("argument --%s needs help text"):format(s.name) end
    if s.pattern ~= nil and type(s.pattern) ~= "string" then
      return nil, ("argument --%s: pattern must be a string"):format(s.name)
    end
    if s.default ~= nil then
      local v, err = M.check_value(s, s.default)
      if v == nil then return nil, ("argument --%s: bad default: %s"):format(s.name, err) end
    end
  end
  return list
end

-- bind(specs, given) -> values | nil, message. given: name -> raw string or true (a bare flag).
function M.bind(specs, given)
  local values, known = {}, {}
  for _, s in ipairs(specs) do known[s.name] = s end
  for name in pairs(given) do
    if not known[name] then
      local names = {}
      for _, s in ipairs(specs) do names[#names + 1] = "--" .. s.name end
      return nil, ("unknown argument --%s (this runbook takes: %s)"):format(name,
        #names > 0 and table.concat(names, " ") or "no arguments")
    end
  end
  for _, s in ipairs(specs) do
    local raw = given[s.name]
    if raw == nil then
      if s.required then return nil, ("missing required argument --%s (%s)"):format(s.name, s.help) end
      if s.default ~= nil then values[s.name] = assert(M.check_value(s, s.default))
      elseif s.type == "boolean" then values[s.name] = false end
    else
      local v, err = M.check_value(s, raw)
      if v == nil then return nil, err end
      values[s.name] = v
    end
  end
  return values
end

return M
