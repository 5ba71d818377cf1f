-- runbook.prim.postfix: Postfix configuration and queue, wherever the service runs (a container
-- reached with docker exec, or the host itself, local or over SSH: runbook.prim.host decides).
--
--   ctx:postconf("ec2/postfix", "relay_domains") -> value, list          (read)
--   ctx:postconf(svc, {"relay_domains", "relay_transport"}) -> {name = value}, {name = list}
--   ctx:postconf(svc) -> every non-default parameter (postconf -n) as {name = value}, {name = list}
--   ctx:postconf(svc, names, {expand = true}) -> the same with $name references expanded (postconf -x)
--       list: the value split on Postfix's list separators (whitespace and commas)
--       codes: notfound (unknown parameter), and those of exec
--   ctx:postmap(svc, "type:table", {key...} [, {timeout=}]) -> {key = value | false}  (read)
--       ONE `postmap -q - type:table` with the keys on its standard input: Postfix's own lookup
--       (map types, case folding) answers for every key at once; false = not in the table.
--       A table postmap cannot open or query (missing .db, database down) is an error, code
--       "lookup" (the message is postmap's); the command's own failures keep exec's codes.
--   ctx:postconf_set(svc, name, value) -> {name, value, before}         WRITE
--       dry run: nil, "dry run: would postconf.set ec2/postfix:NAME", "dryrun"; the would-record
--       has before = current value, after = value and the exact command `postconf -e 'name = value'`.
--       --apply: postconf -e, then postfix reload, then re-read and verify (code "io" if it differs)
--   ctx:postqueue(svc) -> { {queue_name, queue_id, arrival_time, message_size, sender,
--       recipients = { {address, delay_reason}, ... }, forced_expire}, ... }        (read; postqueue -j)
--   ctx:postqueue_flush(svc [, queue_id]) -> true                       WRITE: postqueue -i ID | -f
-- A service with `config_dir:` in the inventory gets `-c DIR` on every command.
-- Depends on: runbook.prim.host (raw runner), runbook.call, runbook.json.
local call = require "runbook.call"

local M = {}

local function host() return require "runbook.prim.host" end

local function check_svc(spec, fname)
  if type(spec) ~= "string" or not spec:find("/", 1, true) then
    error(("bad argument #1 to '%s' (\"host/service\" expected)"):format(fname), 3)
  end
end

local function check_name(name, fname, argn)
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    error(("bad argument #%d to '%s' (Postfix parameter name expected, got %s)"):format(
      argn, fname, type(name) == "string" and ("'" .. name .. "'") or type(name)), 3)
  end
end

-- argv for a Postfix command in this service, with -c DIR when the inventory names one
local function pf(svc, cmd, ...)
  local argv = { cmd }
  if svc.config_dir then argv[2] = "-c"; argv[3] = svc.config_dir end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return argv
end

local function trim(s) return (s:gsub("%s+$", "")) end

-- split_list(value) -> list of items: Postfix separates list items by whitespace and commas
function M.split_list(value)
  local l = {}
  for item in value:gmatch("[^%s,]+") do l[#l + 1] = item end
  return l
end

-- parse `postconf` output ("name = value" lines; a line starting with blanks continues the value)
function M.parse(out)
  local map, order, last = {}, {}, nil
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+) =%s?(.*)$")
    if k then
      map[k] = v
      order[#order + 1] = k
      last = k
    elseif last and line:match("^%s") then
      map[last] = map[last] .. " " .. line:gsub("^%s+", "")
    end
  end
  return map, order
end

local function failure(what, r)
  local e = trim(r.stderr)
  local code = "io"
  if e:find("unknown parameter", 1, true) then code = "notfound"
  elseif e:find("ermission denied", 1, true) then code = "denied" end
  return nil, ("%s: %s"):format(what, e ~= "" and e or ("exit " .. tostring(r.status))), code
end

-- raw reads (no trace event): value | map, or nil, msg, code
local function read_params(ctx, spec, names, expand)
  local svc = ctx:service(spec)
  local argv
  if names == nil then argv = pf(svc, "postconf", "-n")
  elseif expand then argv = pf(svc, "postconf", "-x", table.unpack(names))
  else argv = pf(svc, "postconf", table.unpack(names)) end
  local r, msg, code = host().run(ctx, spec, argv, {})
  if not r then return nil, msg, code end
  if r.status ~= 0 or r.stderr:find("unknown parameter", 1, true) then
    return failure(spec .. ": " .. host().display(argv), r)
  end
  local map = M.parse(r.stdout)
  for _, n in ipairs(names or {}) do
    if map[n] == nil then return nil, ("%s: postconf printed no value for %s"):format(spec, n), "protocol" end
  end
  return map
end

local function read_one(ctx, spec, name)
  local map, msg, code = read_params(ctx, spec, { name })
  if not map then return nil, msg, code end
  return map[name]
end

local function lists_of(map)
  local lists = {}
  for k, v in pairs(map) do lists[k] = M.split_list(v) end
  return lists
end

local function queue_ids(q)
  local ids = {}
  for i, m in ipairs(q) do ids[i] = m.queue_id end
  return table.concat(ids, " ")
end

-- postqueue -j output -> list of records
function M.parse_queue(out)
  local json = require "runbook.json"
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local rec, msg = json.decode(line)
    if type(rec) ~= "table" then return nil, "postqueue -j: bad JSON line: " .. tostring(msg), "protocol" end
    local rcpts = {}
    for i, rc in ipairs(rec.recipients or {}) do
      rcpts[i] = { address = rc.address, delay_reason = rc.delay_reason }
    end
    list[#list + 1] = {
      queue_name = rec.queue_name, queue_id = rec.queue_id, arrival_time = rec.arrival_time,
      message_size = rec.message_size, sender = rec.sender, forced_expire = rec.forced_expire,
      recipients = rcpts,
    }
  end
  return list
end

-- parse_postmap(result, keys, what) -> {key = value | false} | nil, msg, "lookup"
-- `postmap -q -` prints "key<TAB>value" for each key found and exits 1 when none was found; a
-- table it cannot open or query is a fatal error (exit 1, "postmap: fatal: ..." on stderr).
function M.parse_postmap(r, keys, what)
  local err = trim(r.stderr or "")
  if err:find("fatal:", 1, true) or err:find("error:", 1, true) or (r.status ~= 0 and r.status ~= 1) then
    return nil, ("%s: %s"):format(what, err ~= "" and err or ("exit " .. tostring(r.status))), "lookup"
  end
  local out = {}
  for _, k in ipairs(keys) do out[k] = false end
  for line in r.stdout:gmatch("[^\n]+") do
    local k, v = line:match("^(%S+)%s+(.-)%s*$")
    if k then
      -- postmap prints the key as it was asked; match case-insensitively as Postfix folds
      for _, want in ipairs(keys) do if want:lower() == k:lower() then out[want] = v end end
    end
  end
  return out
end

local function read_queue(ctx, spec)
  local svc = ctx:service(spec)
  local argv = pf(svc, "postqueue", "-j")
  local r, msg, code = host().run(ctx, spec, argv, {})
  if not r then return nil, msg, code end
  if r.status ~= 0 then return failure(spec .. ": postqueue -j", r) end
  return M.parse_queue(r.stdout)
end

function M.install(Ctx)
  function Ctx:postconf(spec, names, opts)
    check_svc(spec, "postconf")
    if opts ~= nil then
      if type(opts) ~= "table" then error("bad argument #3 to 'postconf' (options table expected)", 2) end
      for k, v in pairs(opts) do
        if k ~= "expand" then error(("postconf: unknown option '%s'"):format(tostring(k)), 2) end
        if type(v) ~= "boolean" then error("postconf: option 'expand' must be a boolean", 2) end
      end
    end
    local expand = opts and opts.expand and names ~= nil
    local list
    if type(names) == "string" then
      check_name(names, "postconf", 2)
      list = { names }
    elseif type(names) == "table" then
      if #names == 0 then error("bad argument #2 to 'postconf' (non-empty list of names expected)", 2) end
      for _, n in ipairs(names) do check_name(n, "postconf", 2) end
      list = names
    elseif names ~= nil then
      error("bad argument #2 to 'postconf' (name, list of names or nil expected)", 2)
    end
    local svc = self:service(spec)
    local argv = list and (expand and pf(svc, "postconf", "-x", table.unpack(list)) or pf(svc, "postconf", table.unpack(list)))
      or pf(svc, "postconf", "-n")
    local map, msg, code = call(self, {
      family = "postconf", op = list and "get" or "list", host = svc.host,
      summary_args = list and { spec, (expand and "-x " or "") .. table.concat(list, " ") } or { spec, "-n" },
      detail = spec .. ": " .. host().display(argv),
      fn = function() return read_params(self, spec, list, expand) end,
      summarize = function(m)
        if type(names) == "string" then return names .. " = " .. m[names] end
        local n = 0
        for _ in pairs(m) do n = n + 1 end
        return n .. " parameters"
      end,
    })
    if not map then return nil, msg, code end
    if type(names) == "string" then return map[names], M.split_list(map[names]) end
    return map, lists_of(map)
  end

  function Ctx:postmap(spec, map, keys, opts)
    check_svc(spec, "postmap")
    if opts ~= nil then
      if type(opts) ~= "table" then error("bad argument #4 to 'postmap' (options table expected)", 2) end
      for k, v in pairs(opts) do
        if k ~= "timeout" then error(("postmap: unknown option '%s'"):format(tostring(k)), 2) end
        if type(v) ~= "number" or not (v > 0) then error("postmap: option 'timeout' must be a number > 0", 2) end
      end
    end
    if type(map) ~= "string" or not map:match("^%a[%w_]*:[^%s]+$") then
      error("bad argument #2 to 'postmap' (\"type:table\" expected)", 2)
    end
    if type(keys) ~= "table" or #keys == 0 then error("bad argument #3 to 'postmap' (non-empty list of keys expected)", 2) end
    for i, k in ipairs(keys) do
      if type(k) ~= "string" or k == "" or k:find("[%s%z]") then
        error(("bad argument #3 to 'postmap' (key %d: a non-empty string without blanks expected)"):format(i), 2)
      end
    end
    local svc = self:service(spec)
    local argv = pf(svc, "postmap", "-q", "-", map)
    local input = table.concat(keys, "\n") .. "\n"
    return call(self, {
      family = "service", op = "exec", host = svc.host, argv = argv,
      summary_args = { spec, map, #keys .. " key(s)" },
      detail = spec .. ": " .. host().display(argv) .. " <<< " .. table.concat(keys, " "),
      fn = function()
        local r, msg, code = host().run(self, spec, argv, { stdin = input, timeout = opts and opts.timeout })
        if not r then return nil, msg, code end
        return M.parse_postmap(r, keys, spec .. ": postmap -q - " .. map)
      end,
      summarize = function(a)
        local hits = {}
        for _, k in ipairs(keys) do if a[k] then hits[#hits + 1] = k .. " -> " .. a[k] end end
        return #hits == 0 and "no key found" or table.concat(hits, "; ")
      end,
    })
  end

  function Ctx:postconf_set(spec, name, value)
    check_svc(spec, "postconf_set")
    check_name(name, "postconf_set", 2)
    if type(value) ~= "string" or value:find("[%z\n\r]") then
      error("bad argument #3 to 'postconf_set' (single-line string expected)", 2)
    end
    local svc = self:service(spec)
    local set_argv = pf(svc, "postconf", "-e", name .. " = " .. value)
    local reload_argv = pf(svc, "postfix", "reload")
    local where = svc.process and ("on " .. svc.host) or ("in " .. spec)
    local before_value
    return call(self, {
      family = "postconf", op = "set", host = svc.host, target = spec .. ":" .. name,
      summary_args = { spec, name .. " = " .. value },
      detail = ("%s; then %s (%s)"):format(host().display(set_argv), host().display(reload_argv), where),
      before = function()
        local v, msg, code = read_one(self, spec, name)
        before_value = v
        return v, msg, code
      end,
      after = value,
      verify = function() return read_one(self, spec, name) end,
      fn = function()
        local r, msg, code = host().run(self, spec, set_argv, {})
        if not r then return nil, msg, code end
        if r.status ~= 0 then return failure(spec .. ": postconf -e", r) end
        r, msg, code = host().run(self, spec, reload_argv, {})
        if not r then return nil, msg, code end
        if r.status ~= 0 then return failure(spec .. ": postfix reload", r) end
        local now
        now, msg, code = read_one(self, spec, name)
        if now == nil then return nil, msg, code end
        if now ~= value then
          return nil, ("%s: %s reads back as '%s', not '%s'"):format(spec, name, now, value), "io"
        end
        return { name = name, value = now, before = before_value, reloaded = true }
      end,
      summarize = function(res) return ("%s = %s (reloaded)"):format(res.name, res.value) end,
    })
  end

  function Ctx:postqueue(spec)
    check_svc(spec, "postqueue")
    local svc = self:service(spec)
    return call(self, {
      family = "postqueue", op = "list", host = svc.host, summary_args = { spec },
      detail = spec .. ": " .. host().display(pf(svc, "postqueue", "-j")),
      fn = function() return read_queue(self, spec) end,
      summarize = function(q) return #q .. " queued" .. (#q > 0 and (": " .. queue_ids(q)) or "") end,
    })
  end

  function Ctx:postqueue_flush(spec, qid)
    check_svc(spec, "postqueue_flush")
    if qid ~= nil and (type(qid) ~= "string" or not qid:match("^[%w]+$")) then
      error("bad argument #2 to 'postqueue_flush' (queue id or nil expected)", 2)
    end
    local svc = self:service(spec)
    local argv = qid and pf(svc, "postqueue", "-i", qid) or pf(svc, "postqueue", "-f")
    return call(self, {
      family = "postqueue", op = qid and "flush" or "flush_all", host = svc.host,
      target = spec .. ":" .. (qid or "queue"), summary_args = { spec, qid or "all" },
      detail = spec .. ": " .. host().display(argv),
      before = function()
        local q, msg, code = read_queue(self, spec)
        if not q then return nil, msg, code end
        if qid then
          for _, m in ipairs(q) do if m.queue_id == qid then return m.queue_name .. " " .. qid end end
          return "(not queued)"
        end
        return #q .. " queued"
      end,
      fn = function()
        local r, msg, code = host().run(self, spec, argv, {})
        if not r then return nil, msg, code end
        if r.status ~= 0 then return failure(spec .. ": " .. host().display(argv), r) end
        return true
      end,
    })
  end
end

return M
