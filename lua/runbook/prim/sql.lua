-- runbook.prim.sql: the databases of the inventory (`databases:`) as ctx methods.
--
--   ctx:sql(dbname, query, ...params)
--       READ. query must start with SELECT, SHOW, DESCRIBE/DESC, EXPLAIN or WITH (anything else
--       raises "use ctx:sql_write"); params bind to `?` in order.
--       -> {columns={names}, rows={{col=value}...}, truncated=true|nil} | nil, msg, code
--   ctx:sql_write(dbname, query, params, opts)
--       WRITE through the dry-run gate. opts: before = {query, params} (a read showing the rows
--       the write touches: read in a dry run too, and re-read after applying, so the audit
--       journal gets before and after), secret = {i, ...} (positions of params shown as ***),
--       target = "what changes" (default "<db>: <VERB> <table>").
--       -> {affected=, insert_id=, warnings=, before=rows|nil, after=rows|nil}
--        | nil, "dry run: would sql.write ...", "dryrun" | nil, msg, code
--   ctx:sql_null() -> the SQL NULL value (bind it as a param; compare row values with it)
--
-- Values: integers -> Lua integers, DECIMAL -> exact strings, FLOAT/DOUBLE -> numbers, dates ->
-- strings, NULL -> ctx:sql_null() (== json.null, distinct from ""). Rows are keyed by column
-- name: alias duplicate names. At most M.MAX_ROWS rows per query (`truncated` says when cut).
-- Codes: auth refused timeout unreachable tls (connecting), sql (the server refused the
-- statement), closed (connection lost; the next call reconnects), dryrun.
--
-- Connections: one per database per run for reads, opened with SET SESSION TRANSACTION READ
-- ONLY so that a read cannot change anything even if the text check above were fooled; writes
-- use a second connection, opened only when a write is applied. The password comes from the
-- inventory's password_env / password_file and is registered with ctx:secret before use.
-- Timeouts: connect_timeout from the inventory defaults; read/write timeout ctx:timeout().
-- Depends on: runbook.sql, runbook.call, runbook.inventory.
local sql = require "runbook.sql"
local call = require "runbook.call"
local inventory = require "runbook.inventory"

local M = {}
M.MAX_ROWS = 10000
M.SHOW_MAX = 2000          -- bytes of one param value shown in a trace or dry run

local READ_VERBS = { SELECT = true, SHOW = true, DESCRIBE = true, DESC = true, EXPLAIN = true,
                     WITH = true }

-- tokens(query) -> list of upper-cased words and punctuation, with comments and literals gone
-- (strings '...' "..." and `identifiers` become the token "?"). MariaDB EXECUTES the text of
-- /*! ... */ and /*M! ... */ "comments", so their content is kept as code; every other comment
-- (/* */, "-- " to the end of the line, # to the end of the line) is dropped. An unterminated
-- literal or comment -> nil.
local function tokens(query)
  local out, i, n = {}, 1, #query
  while i <= n do
    local c = query:sub(i, i)
    local two = query:sub(i, i + 1)
    if c:match("%s") then
      i = i + 1
    elseif two == "/*" then
      local exec_mark = query:match("^/%*M?!%d*", i)
      if exec_mark then
        i = i + #exec_mark                       -- keep the content; its "*/" is dropped below
      else
        local e = query:find("*/", i + 2, true)
        if not e then return nil end
        i = e + 2
      end
    elseif two == "*/" then
      i = i + 2                                  -- the end of an executable comment
    elseif c == "#" or (two == "--" and (i + 2 > n or query:sub(i + 2, i + 2):match("[%s%c]"))) then
      local e = query:find("\n", i, true)
      i = e and e + 1 or n + 1
    elseif c == "'" or c == '"' or c == "`" then
      local j = i + 1
      while true do
        if j > n then return nil end
        local d = query:sub(j, j)
        if d == "\\" and c ~= "`" then j = j + 2
        elseif d == c then
          if query:sub(j + 1, j + 1) == c then j = j + 2 else break end
        else j = j + 1 end
      end
      out[#out + 1] = "?"
      i = j + 1
    else
      local w = query:match("^[%w_$@]+", i)
      if w then
        out[#out + 1] = w:upper()
        i = i + #w
      else
        out[#out + 1] = c
        i = i + 1
      end
    end
  end
  return out
end
M.tokens = tokens

-- The statement's first word, upper-cased (after comments; an executable comment's content
-- counts as code).
local function verb(query)
  local t = tokens(query)
  local v = t and t[1] or ""
  return v:match("^%a+$") and v or ""
end
M.verb = verb

-- Words that make a statement that starts like a read do something else: INTO (OUTFILE,
-- DUMPFILE, @var), ANALYZE (EXPLAIN ANALYZE runs the statement), FOR UPDATE / LOCK IN SHARE
-- MODE (locks), and functions with side effects.
local READ_DENY = { INTO = "INTO", ANALYZE = "ANALYZE", UPDATE = "FOR UPDATE", LOCK = "LOCK",
  NEXTVAL = "NEXTVAL()", SETVAL = "SETVAL()", GET_LOCK = "GET_LOCK()", RELEASE_LOCK = "RELEASE_LOCK()",
  RELEASE_ALL_LOCKS = "RELEASE_ALL_LOCKS()", LOAD_FILE = "LOAD_FILE()", DELETE = "DELETE",
  INSERT = "INSERT", REPLACE = "REPLACE", DROP = "DROP", CREATE = "CREATE", ALTER = "ALTER" }

-- is_read(query) -> true | false, why. Decided on tokens, after removing comments and literals.
local function is_read(query)
  local t = tokens(query)
  if not t then return false, "(unterminated comment or literal)" end
  local v = t[1] or ""
  if not READ_VERBS[v] then return false, v == "" and "(no statement verb)" or v end
  for k, w in ipairs(t) do
    if READ_DENY[w] and not (w == "REPLACE" and t[k + 1] == "(") then   -- REPLACE() the string function
      return false, v .. " ... " .. READ_DENY[w]
    end
    if w == ";" and t[k + 1] then return false, "several statements" end
  end
  return true
end
M.is_read = is_read

local function check_params(params, fname, argn)
  for i = 1, params.n or #params do
    local v = params[i]
    local t = type(v)
    if not (t == "string" or t == "number" or t == "boolean" or v == sql.NULL) then
      error(("bad argument #%d to '%s' (parameter %d is %s: bind a string, number, boolean " ..
             "or ctx:sql_null())"):format(argn, fname, i, t), 3)
    end
  end
end

-- A display form of one bound value (for traces and dry runs only, never for execution).
local function show_value(v)
  if v == sql.NULL then return "NULL" end
  if type(v) ~= "string" then return tostring(v) end
  local s = v
  local cut = ""
  if #s > M.SHOW_MAX then cut, s = ("...(%d bytes)"):format(#v), s:sub(1, M.SHOW_MAX) end
  s = s:gsub('[%c"\\\127]', function(c)
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or ("\\x%02X"):format(c:byte())
  end)
  return '"' .. s .. '"' .. cut
end

-- detail(query, params, secret_positions) -> "SQL text\nparams: [1] ..., [2] ***"
local function detail(query, params, secret)
  local out = {}
  for i = 1, params.n or #params do
    out[#out + 1] = ("[%d] %s"):format(i, secret[i] and "***" or show_value(params[i]))
  end
  if #out == 0 then return query end
  return query .. "\nparams: " .. table.concat(out, ", ")
end
M.detail = detail

local function short(query)
  local s = query:gsub("%s+", " "):gsub("^ ", "")
  if #s > 80 then s = s:sub(1, 77) .. "..." end
  return s
end

local function database(ctx, dbname, level)
  if type(dbname) ~= "string" then
    error("bad argument #1 (database name from the inventory expected)", level + 1)
  end
  local db = ctx.inventory.databases[dbname]
  if not db then error(("unknown database '%s' (not in the inventory)"):format(dbname), level + 1) end
  return db
end

-- The inventory host a database belongs to, for trace lines.
local function db_host(db)
  return db.service and db.service:match("^([^/]+)/") or ("db:" .. db.name)
end

-- connection(ctx, dbname, mode) -> conn | nil, msg, code. mode "read" (READ ONLY session) or
-- "write". Cached per run; a connection that died is replaced by a new one.
function M.connection(ctx, dbname, mode)
  local db = database(ctx, dbname, 2)
  local base = "sql:" .. dbname .. ":" .. mode
  ctx._sql_gen = ctx._sql_gen or {}
  local gen = ctx._sql_gen[base] or 1
  local old = ctx.cache[base .. "#" .. gen]
  if old and not old:is_open() then
    pcall(old.close, old)
    gen = gen + 1
    ctx._sql_gen[base] = gen
  end
  return ctx:cached(base .. "#" .. gen, function()
    local password, msg, code = inventory.secret(db, "password")
    if password == nil and msg then return nil, msg, code end
    ctx:secret(password)
    local where = db.unix_socket or ("%s:%d"):format(db.host, db.port or 3306)
    return call(ctx, {
      family = "sql", op = "connect", host = db_host(db),
      summary_args = { dbname, ("%s@%s/%s"):format(db.user, where, db.database), mode },
      fn = function()
        local c, m, cd = sql.connect {
          host = db.host, port = db.port, unix_socket = db.unix_socket, user = db.user,
          password = password, database = db.database, tls = db.tls or false,
          connect_timeout = ctx:connect_timeout(), read_timeout = ctx:timeout(),
          write_timeout = ctx:timeout(),
        }
        if c and mode == "read" then
          local ok, m2, c2 = c:query("SET SESSION TRANSACTION READ ONLY")
          if not ok then
            c:close()
            return nil, m2, c2
          end
        end
        return c, m, cd
      end,
    })
  end)
end

-- run(ctx, dbname, mode, query, params) -> raw result | nil, msg, code (no trace event)
local function run(ctx, dbname, mode, query, params)
  local c, msg, code = M.connection(ctx, dbname, mode)
  if not c then return nil, msg, code end
  local arr = {}
  for i = 1, params.n or #params do arr[i] = params[i] end
  return c:query(query, arr, { max_rows = M.MAX_ROWS })
end
M.run = run

local function rows_summary(r)
  local s = ("%d row%s"):format(#r.rows, #r.rows == 1 and "" or "s")
  if r.truncated then s = s .. " (truncated)" end
  return s
end

-- What a write changes, for the would-record and the journal.
local function target_of(dbname, query)
  local up = query:upper()
  local v = verb(query)
  local tbl = up:match("^%s*UPDATE%s+([%w_.`]+)") or up:match("^%s*DELETE%s+FROM%s+([%w_.`]+)")
    or up:match("^%s*INSERT%s+INTO%s+([%w_.`]+)") or up:match("^%s*INSERT%s+([%w_.`]+)")
    or up:match("^%s*REPLACE%s+INTO%s+([%w_.`]+)")
  if tbl then
    local a, b = up:find(tbl, 1, true)
    tbl = query:sub(a, b):gsub("`", "")
  end
  return ("%s: %s%s"):format(dbname, v, tbl and (" " .. tbl) or "")
end

local WRITE_OPTS = { before = "table", secret = "table", target = "string" }

function M.install(Ctx)
  function Ctx:sql_null() return sql.NULL end

  function Ctx:sql(dbname, query, ...)
    local db = database(self, dbname, 2)
    if type(query) ~= "string" then error("bad argument #2 to 'sql' (SQL text expected)", 2) end
    local ok, what = is_read(query)
    if not ok then
      error(("ctx:sql runs reads only (SELECT, SHOW, DESCRIBE, EXPLAIN, WITH); %s is a write: " ..
             "use ctx:sql_write"):format(what), 2)
    end
    local params = table.pack(...)
    check_params(params, "sql", 3)
    return call(self, {
      family = "sql", op = "query", host = db_host(db),
      summary_args = { dbname, short(query) },
      detail = detail(query, params, {}),
      fn = function() return run(self, dbname, "read", query, params) end,
      summarize = rows_summary,
    })
  end

  function Ctx:sql_write(dbname, query, params, opts)
    local db = database(self, dbname, 2)
    if type(query) ~= "string" then error("bad argument #2 to 'sql_write' (SQL text expected)", 2) end
    if params ~= nil and type(params) ~= "table" then
      error("bad argument #3 to 'sql_write' (params list expected)", 2)
    end
    params = params or {}
    check_params(params, "sql_write", 3)
    opts = opts or {}
    if type(opts) ~= "table" then error("bad argument #4 to 'sql_write' (options table expected)", 2) end
    for k, v in pairs(opts) do
      if not WRITE_OPTS[k] then error(("sql_write: unknown option '%s'"):format(tostring(k)), 2) end
      if type(v) ~= WRITE_OPTS[k] then error(("sql_write: option '%s' must be a %s"):format(k, WRITE_OPTS[k]), 2) end
    end
    local secret = {}
    for _, i in ipairs(opts.secret or {}) do
      secret[i] = true
      if type(params[i]) == "string" then self:secret(params[i]) end
    end
    local bq, bp
    if opts.before then
      bq, bp = opts.before[1], opts.before[2] or {}
      if type(bq) ~= "string" or type(bp) ~= "table" then
        error("sql_write: option 'before' must be {query, params}", 2)
      end
      if not is_read(bq) then error("sql_write: the 'before' query must be a read (SELECT ...)", 2) end
      check_params(bp, "sql_write", 4)
    end
    local function read_rows()
      local r, msg, code = run(self, dbname, "read", bq, bp)
      if not r then return nil, msg, code end
      return r.rows
    end
    local seen = {}
    local function capture(slot)
      return function()
        local rows, msg, code = read_rows()
        seen[slot] = rows
        return rows, msg, code
      end
    end
    local text = detail(query, params, secret)
    if bq then text = text .. "\nbefore/after: " .. detail(bq, bp, {}) end
    local res, msg, code = call(self, {
      family = "sql", op = "write", host = db_host(db),
      summary_args = { dbname, short(query) },
      target = opts.target and (dbname .. ": " .. opts.target) or target_of(dbname, query),
      detail = text,
      before = bq and capture("before") or nil,
      verify = bq and capture("after") or nil,
      fn = function() return run(self, dbname, "write", query, params) end,
      summarize = function(r) return ("%d row%s affected"):format(r.affected, r.affected == 1 and "" or "s") end,
    })
    if res then res.before, res.after = seen.before, seen.after end
    return res, msg, code
  end
end

return M
