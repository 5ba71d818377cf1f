-- runbook.prim.dovecot: what Dovecot itself answers, wherever it runs (a container reached with
-- docker exec, or the host: runbook.prim.host decides). Reads only; each is one command that the
-- gate classifies by its argv (lua/runbook/gate.lua, gate.readonly: doveadm, doveconf).
--
--   ctx:doveconf(svc, {name...}) -> {name = value}           doveconf NAME... ("name = value" lines)
--       codes: notfound (unknown setting), and those of exec
--   ctx:doveadm_user(svc, user) -> {found = true, fields = {uid=, gid=, home=, mail=, ...}}
--                               |  {found = false, text = "...doesn't exist"}     doveadm user USER
--       the userdb answer Dovecot will use (through its auth cache when one is configured)
--   ctx:doveadm_auth(svc, user) -> {found = bool, text = "..."}   doveadm auth lookup -f user USER
--       only whether the passdb knows the user: only its user field is asked for (never the hash)
--   ctx:doveadm_quota(svc, user) -> { {name=, type="STORAGE"|"MESSAGE", value=, limit=, percent=} ... }
--   ctx:doveadm_mailboxes(svc, user [, {subscribed = true}]) -> {name...}   doveadm mailbox list
--   ctx:doveadm_find(svc, user, message_id) -> { {mailbox=, uid=} ... }     doveadm fetch
--       every copy of the message with that Message-ID header, in any mailbox of the user
-- Every method takes a last optional {timeout = seconds} (default: the inventory's timeout).
-- A user Dovecot does not know is an answer (found = false), not an error. A lookup Dovecot
-- could not make (userdb/passdb temporary failure, exit 75) is code "lookup": unknown, never "no".
-- Depends on: runbook.prim.host (raw runner), runbook.call.
local call = require "runbook.call"

local M = {}

local function host() return require "runbook.prim.host" end

local EX_NOUSER, EX_TEMPFAIL = 67, 75

local function check_svc(spec, fname)
  if type(spec) ~= "string" or not spec:find("/", 1, true) then
    error(("bad argument #1 to '%s' (\"host/service\" expected)"):format(fname), 3)
  end
end

local function check_user(user, fname)
  if type(user) ~= "string" or user == "" or #user > 320 or user:find("[%s%c]") or user:sub(1, 1) == "-" then
    error(("bad argument #2 to '%s' (user name expected)"):format(fname), 3)
  end
end

local function trim(s) return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")) end

local function check_opts(opts, fname, extra)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("bad argument to '%s' (options table expected)"):format(fname), 3) end
  for k, v in pairs(opts) do
    if k == "timeout" then
      if type(v) ~= "number" or not (v > 0) then error(fname .. ": option 'timeout' must be a number > 0", 3) end
    elseif not (extra and extra[k] and type(v) == extra[k]) then
      error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3)
    end
  end
  return opts
end

-- run(ctx, spec, argv, parse, timeout) -> parse(result) | nil, msg, code. Exit 75 is "lookup".
local function run(ctx, spec, argv, parse, timeout)
  local r, msg, code = host().run(ctx, spec, argv, { timeout = timeout })
  if not r then return nil, msg, code end
  return parse(r)
end

local function failure(spec, argv, r)
  local e = trim(r.stderr)
  local code = r.status == EX_TEMPFAIL and "lookup" or "io"
  if e:find("Unknown setting", 1, true) then code = "notfound" end
  if e:find("ermission denied", 1, true) then code = "denied" end
  return nil, ("%s: %s: %s"):format(spec, host().display(argv), e ~= "" and e:sub(1, 400) or ("exit " .. tostring(r.status))), code
end

-- parse_doveconf("a = 1\nplugin {\n  quota = x\n}\n") -> {a="1", plugin="", ["plugin/quota"]="x"}
-- a section is present as "" and its settings as "section/name"
function M.parse_doveconf(out)
  local map, path = {}, {}
  for line in tostring(out):gmatch("[^\n]+") do
    local sect = line:match("^%s*([%w_]+)%s*[%w_ ]*{%s*$")
    if sect then
      path[#path + 1] = sect
      map[table.concat(path, "/")] = ""
    elseif line:match("^%s*}%s*$") then
      path[#path] = nil
    else
      local k, v = line:match("^%s*([%w_]+) =%s?(.*)$")
      if k then
        local name = #path > 0 and (table.concat(path, "/") .. "/" .. k) or k
        map[name] = v
      end
    end
  end
  return map
end

-- parse_user(out) -> fields: `doveadm user` prints "field value" rows (a header row first)
function M.parse_user(out)
  local f = {}
  for line in tostring(out):gmatch("[^\n]+") do
    local k, v = line:match("^%s*([%w_]+)%s+(.-)%s*$")
    if k and not (k == "field" and v == "value") and k ~= "userdb" and k ~= "passdb" then f[k] = v end
  end
  return f
end

-- parse_quota(out) -> rows of `doveadm quota get` (table formatter)
function M.parse_quota(out)
  local rows = {}
  for line in tostring(out):gmatch("[^\n]+") do
    local name, kind, value, limit, pct = line:match("^(.-)%s+(STORAGE)%s+(%S+)%s+(%S+)%s+(%S+)%s*$")
    if not name then name, kind, value, limit, pct = line:match("^(.-)%s+(MESSAGE)%s+(%S+)%s+(%S+)%s+(%S+)%s*$") end
    if name then
      rows[#rows + 1] = { name = trim(name), type = kind, value = tonumber(value) or value,
                          limit = tonumber(limit) or limit, percent = tonumber(pct) or pct }
    end
  end
  return rows
end

-- parse_fetch(out) -> { {mailbox=, uid=} ... }: the pager formatter, records split by form feeds
function M.parse_fetch(out)
  local list, cur = {}, nil
  for line in (tostring(out) .. "\n"):gmatch("(.-)\n") do
    local k, v = line:match("^(%a+):%s?(.*)$")
    if k == "mailbox" then cur = { mailbox = v }; list[#list + 1] = cur
    elseif k == "uid" and cur then cur.uid = tonumber(v) or v end
  end
  return list
end

-- read(ctx, spec, argv, summary_args, parse, timeout, summarize): the one shape of every method
-- here: a command in the service, through the choke point, its result parsed.
local function read(ctx, spec, argv, summary_args, parse, timeout, summarize)
  local svc = ctx:service(spec)
  return call(ctx, {
    family = "service", op = "exec", host = svc.host, argv = argv,
    summary_args = summary_args, detail = spec .. ": " .. host().display(argv),
    fn = function() return run(ctx, spec, argv, parse, timeout) end,
    summarize = summarize,
  })
end

function M.install(Ctx)
  function Ctx:doveconf(spec, names, opts)
    check_svc(spec, "doveconf")
    opts = check_opts(opts, "doveconf")
    if type(names) ~= "table" or #names == 0 then error("bad argument #2 to 'doveconf' (non-empty list of names expected)", 2) end
    for _, n in ipairs(names) do
      if type(n) ~= "string" or not n:match("^[%w_]+$") then error("bad argument #2 to 'doveconf' (setting names expected)", 2) end
    end
    local argv = { "doveconf" }
    for _, n in ipairs(names) do argv[#argv + 1] = n end
    return read(self, spec, argv, { spec, table.concat(names, " ") }, function(r)
      if r.status ~= 0 then return failure(spec, argv, r) end
      local map = M.parse_doveconf(r.stdout)
      for _, n in ipairs(names) do
        if map[n] == nil then return nil, ("%s: doveconf printed no value for %s"):format(spec, n), "protocol" end
      end
      return map
    end, opts.timeout,
    function(m) local o = {} for _, n in ipairs(names) do o[#o + 1] = n .. " = " .. m[n] end return table.concat(o, "; ") end)
  end

  function Ctx:doveadm_user(spec, user, opts)
    check_svc(spec, "doveadm_user")
    check_user(user, "doveadm_user")
    opts = check_opts(opts, "doveadm_user")
    local argv = { "doveadm", "user", user }
    return read(self, spec, argv, { spec, user }, function(r)
      local text = trim(r.stderr .. " " .. r.stdout)
      if r.status == EX_NOUSER or (r.status ~= 0 and text:find("doesn't exist", 1, true)) then
        return { found = false, text = text:sub(1, 300) }
      end
      if r.status ~= 0 then return failure(spec, argv, r) end
      return { found = true, fields = M.parse_user(r.stdout) }
    end, opts.timeout,
    function(u) return u.found and ("found, home " .. tostring(u.fields.home)) or ("not found: " .. u.text) end)
  end

  function Ctx:doveadm_auth(spec, user, opts)
    check_svc(spec, "doveadm_auth")
    check_user(user, "doveadm_auth")
    opts = check_opts(opts, "doveadm_auth")
    local argv = { "doveadm", "auth", "lookup", "-f", "user", user }   -- never the password field
    return read(self, spec, argv, { spec, user }, function(r)
      -- never keep stdout: it carries the passdb's fields, the password hash among them
      local err = trim(r.stderr)
      if r.status == EX_NOUSER or err:find("doesn't exist", 1, true) or err:find("not found", 1, true) then
        return { found = false, text = err:gsub("[^\n]*password[^\n]*", ""):sub(1, 300) }
      end
      if r.status ~= 0 then
        return nil, ("%s: doveadm auth lookup %s: exit %s"):format(spec, user, tostring(r.status)), r.status == EX_TEMPFAIL and "lookup" or "io"
      end
      return { found = true, text = "passdb: " .. user .. " found" }
    end, opts.timeout,
    function(a) return a.found and "passdb: found" or "passdb: not found" end)
  end

  function Ctx:doveadm_quota(spec, user, opts)
    check_svc(spec, "doveadm_quota")
    check_user(user, "doveadm_quota")
    opts = check_opts(opts, "doveadm_quota")
    local argv = { "doveadm", "quota", "get", "-u", user }
    return read(self, spec, argv, { spec, user }, function(r)
      if r.status ~= 0 then return failure(spec, argv, r) end
      return M.parse_quota(r.stdout)
    end, opts.timeout,
    function(rows)
      local o = {}
      for _, q in ipairs(rows) do o[#o + 1] = ("%s %s/%s"):format(q.type, tostring(q.value), tostring(q.limit)) end
      return #o > 0 and table.concat(o, ", ") or "no quota"
    end)
  end

  function Ctx:doveadm_mailboxes(spec, user, opts)
    check_svc(spec, "doveadm_mailboxes")
    check_user(user, "doveadm_mailboxes")
    opts = check_opts(opts, "doveadm_mailboxes", { subscribed = "boolean" })
    local argv = { "doveadm", "mailbox", "list", "-u", user }
    if opts and opts.subscribed then argv[#argv + 1] = "-s" end
    return read(self, spec, argv, { spec, user }, function(r)
      if r.status ~= 0 then return failure(spec, argv, r) end
      local list = {}
      for line in r.stdout:gmatch("[^\n]+") do local n = trim(line); if n ~= "" then list[#list + 1] = n end end
      return list
    end, opts.timeout,
    function(l) return table.concat(l, ", ") end)
  end

  function Ctx:doveadm_find(spec, user, message_id, opts)
    check_svc(spec, "doveadm_find")
    check_user(user, "doveadm_find")
    opts = check_opts(opts, "doveadm_find")
    if type(message_id) ~= "string" or message_id == "" or #message_id > 998 or message_id:find("[%c]") then
      error("bad argument #3 to 'doveadm_find' (Message-ID expected)", 2)
    end
    local argv = { "doveadm", "fetch", "-u", user, "mailbox uid", "mailbox", "*", "header", "message-id", message_id }
    return read(self, spec, argv, { spec, user, message_id }, function(r)
      if r.status ~= 0 then return failure(spec, argv, r) end
      return M.parse_fetch(r.stdout)
    end, opts.timeout,
    function(l)
      local o = {}
      for _, m in ipairs(l) do o[#o + 1] = ("%s uid %s"):format(m.mailbox, tostring(m.uid)) end
      return #o > 0 and table.concat(o, ", ") or "not found"
    end)
  end
end

return M
