-- ctx:sql / ctx:sql_write (lua/runbook/prim/sql.lua) through the real context and choke point,
-- against a private throwaway mariadbd on 127.0.0.32: reads only through ctx:sql, the read
-- session cannot write, dry run leaves the row unchanged and shows SQL + params (secrets
-- masked) + current rows, apply changes it and journals before/after, the password never
-- appears in any event or journal line, a lost connection is replaced.
local t = require "tap"
local F = require "fixture_sqlhttp"
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local json = require "runbook.json"
local sql = require "runbook.sql"

F.run(t, function()
  local db = F.mariadb()
  local journal = db.dir .. "/audit.jsonl"
  local function inv()
    return assert(inventory.validate {
      defaults = { timeout = 5, connect_timeout = 3 },
      audit = { journal = journal },
      databases = {
        scratch = { host = db.host, port = db.port, user = db.user, database = db.database,
                    password_file = db.password_file },
        wrongpw = { host = db.host, port = db.port, user = db.user, database = db.database,
                    password_env = "RUNBOOK_TEST_SQL_NO_SUCH_VAR" },
        closed = { host = "127.0.0.32", port = 9, user = "x", database = "x",
                   password_file = db.password_file },
      },
    })
  end
  local events = {}
  local function sink(ev) events[#events + 1] = ev end
  local function all_text()
    local parts = {}
    for _, ev in ipairs(events) do parts[#parts + 1] = json.encode(ev) end
    parts[#parts + 1] = F.read_file(journal) or ""
    return table.concat(parts, "\n")
  end

  -- seed through the raw module (the test's own setup, not the code under test)
  local raw = assert(sql.connect { host = db.host, port = db.port, user = db.user,
    password = db.password, database = db.database })
  assert(raw:query([[CREATE TABLE users (email VARCHAR(255) PRIMARY KEY, enabled TINYINT NOT NULL,
    maildir VARCHAR(255) NULL, note VARCHAR(255) NULL) CHARACTER SET utf8mb4]]))
  assert(raw:query("INSERT INTO users VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
    { "info@example.test", 0, "example.test/info/", "", "o'brien@example.test", 1, sql.NULL, sql.NULL }))

  local ctx = context.new { inventory = inv(), apply = false, sinks = { sink } }

  -- reads
  local r, msg, code = ctx:sql("scratch", "SELECT email, enabled, maildir FROM users WHERE email = ?",
    "info@example.test")
  t.ok(r, "ctx:sql read: " .. (msg or ""))
  t.is(#r.rows, 1, "one row")
  t.is(r.rows[1].enabled, 0, "enabled as an integer")
  t.is(r.rows[1].maildir, "example.test/info/", "maildir")
  r = assert(ctx:sql("scratch", "SELECT note FROM users WHERE email = ?", "o'brien@example.test"))
  t.is(r.rows[1].note, ctx:sql_null(), "NULL is ctx:sql_null()")
  r = assert(ctx:sql("scratch", "  select count(*) AS n from users WHERE note IS NULL OR note = ?", ""))
  t.is(r.rows[1].n, 2, "lower-case verb and leading spaces accepted; params bound")
  for _, q in ipairs { "SHOW TABLES", "DESCRIBE users", "EXPLAIN SELECT * FROM users",
                       "WITH x AS (SELECT 1 AS a) SELECT a FROM x" } do
    t.ok(ctx:sql("scratch", q), "read verb accepted: " .. q:match("^%a+"))
  end
  local last = events[#events]
  t.is(last.op, "sql.query", "read emits a sql.query call event")
  t.is(last.outcome, "ok", "call event outcome ok")

  -- writes refused by ctx:sql
  for _, q in ipairs { "UPDATE users SET enabled = 1", "DELETE FROM users", "INSERT INTO users VALUES ('a',1,NULL,NULL)",
                       "DROP TABLE users", "/*!UPDATE users SET enabled=1*/ SELECT 1",
                       "SELECT * FROM users INTO OUTFILE '/tmp/x'", "CALL p()", "" } do
    local ok, err = pcall(ctx.sql, ctx, "scratch", q)
    t.ok(not ok and tostring(err):find("use ctx:sql_write", 1, true),
      "ctx:sql refuses " .. (q == "" and "(empty)" or q:sub(1, 30)))
  end
  t.like(select(2, pcall(ctx.sql, ctx, "nosuch", "SELECT 1")), "unknown database 'nosuch'", "unknown database raises")
  t.like(select(2, pcall(ctx.sql, ctx, "scratch", "SELECT ?", nil)), "parameter 1 is nil",
    "a nil parameter raises (use ctx:sql_null())")

  -- the read session is READ ONLY even for text the check would let through
  local rc = assert(require("runbook.prim.sql").connection(ctx, "scratch", "read"))
  r, msg, code = rc:query("WITH x AS (SELECT 1) SELECT 1")
  t.ok(r, "read session works")
  r, msg, code = rc:query("UPDATE users SET enabled = 1")
  t.is(code, "sql", "read session refuses an UPDATE at the server")
  t.like(msg, "1792", "... with ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION (1792)")

  -- dry-run write: nothing changes, the would-record shows SQL, params (secret masked) and rows
  local secret_value = "Sup3r-" .. require("runbook.core").random_hex(6)
  events = {}
  r, msg, code = ctx:sql_write("scratch", "UPDATE users SET enabled = ?, note = ? WHERE email = ?",
    { 1, secret_value, "info@example.test" },
    { before = { "SELECT email, enabled, note FROM users WHERE email = ?", { "info@example.test" } },
      secret = { 2 } })
  t.is(r, nil, "dry run: no result")
  t.is(code, "dryrun", "dry run: code dryrun")
  t.like(msg, "would sql%.write scratch: UPDATE users", "dry run: message names the target")
  local would
  for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
  t.ok(would, "dry run emits a would event")
  t.like(would and would.detail, "^UPDATE users SET enabled = %?, note = %? WHERE email = %?\nparams: %[1%] 1, %[2%] %*%*%*, %[3%] \"info@example.test\"",
    "would: exact SQL text and bound params, the secret param as ***")
  t.ok(would and type(would.before) == "table" and would.before[1] and would.before[1].enabled == 0,
    "would: current rows (before) shown")
  t.is(assert(raw:query("SELECT enabled FROM users WHERE email = ?", { "info@example.test" })).rows[1].enabled, 0,
    "dry run left the row unchanged")
  t.ok(not all_text():find(secret_value, 1, true), "dry run: the secret param appears in no event")

  -- apply
  events = {}
  local actx = context.new { inventory = inv(), apply = true, yes = true, sinks = { sink } }
  r, msg, code = actx:sql_write("scratch", "UPDATE users SET enabled = ?, note = ? WHERE email = ?",
    { 1, secret_value, "info@example.test" },
    { before = { "SELECT email, enabled FROM users WHERE email = ?", { "info@example.test" } },
      secret = { 2 } })
  t.ok(r, "apply: result " .. (msg or ""))
  t.is(r and r.affected, 1, "apply: one row affected")
  t.is(r and r.before[1].enabled, 0, "apply: before rows returned")
  t.is(r and r.after[1].enabled, 1, "apply: after rows re-read")
  local now = assert(raw:query("SELECT enabled, note FROM users WHERE email = ?", { "info@example.test" })).rows[1]
  t.ok(now.enabled == 1 and now.note == secret_value, "apply changed the row")
  local jl = F.read_file(journal) or ""
  local rec = json.decode(jl:match("[^\n]+\n?$") or "null")
  t.ok(type(rec) == "table" and rec.op == "sql.write" and rec.outcome == "ok", "journal has the applied write")
  t.ok(type(rec) == "table" and rec.before and rec.before[1].enabled == 0 and rec.after[1].enabled == 1,
    "journal has before and after rows")
  t.ok(not all_text():find(secret_value, 1, true), "apply: the secret param appears in no event or journal line")
  t.ok(not all_text():find(db.password, 1, true), "the database password appears in no event or journal line")

  -- an INSERT of hostile text through sql_write, then read back through ctx:sql
  local hostile = "x'); DROP TABLE users; -- $(id) \\ \n\0"
  r = assert(actx:sql_write("scratch", "INSERT INTO users (email, enabled, note) VALUES (?, ?, ?)",
    { "evil@example.test", 0, hostile }))
  t.is(r.affected, 1, "hostile insert applied")
  r = assert(actx:sql("scratch", "SELECT note FROM users WHERE email = ?", "evil@example.test"))
  t.is(r.rows[1].note, hostile, "hostile text read back byte for byte")
  t.is(#assert(actx:sql("scratch", "SHOW TABLES")).rows, 1, "table still there")

  -- a failing write is reported, not raised
  r, msg, code = actx:sql_write("scratch", "INSERT INTO users (email, enabled) VALUES (?, ?)",
    { "info@example.test", 1 })
  t.is(code, "sql", "duplicate key: code sql")
  t.like(msg, "ERROR 1062 %(23000%)", "duplicate key: errno and SQLSTATE")

  -- option checks
  t.like(select(2, pcall(actx.sql_write, actx, "scratch", "DELETE FROM users", {}, { befor = {} })),
    "unknown option 'befor'", "sql_write: unknown option raises")
  t.like(select(2, pcall(actx.sql_write, actx, "scratch", "DELETE FROM users", {},
    { before = { "DELETE FROM users", {} } })), "must be a read", "sql_write: before must be a read")

  -- connection failures are results with codes
  r, msg, code = ctx:sql("wrongpw", "SELECT 1")
  t.is(code, "auth", "password_env not set: auth (" .. tostring(msg) .. ")")
  r, msg, code = ctx:sql("closed", "SELECT 1")
  t.is(code, "refused", "closed port: refused")

  -- a lost connection is replaced on the next call
  local c1 = assert(require("runbook.prim.sql").connection(actx, "scratch", "read"))
  local id = assert(actx:sql("scratch", "SELECT CONNECTION_ID() AS id")).rows[1].id
  assert(raw:query("KILL CONNECTION " .. math.tointeger(id)))
  r, msg, code = actx:sql("scratch", "SELECT 1 AS one")
  t.is(code, "closed", "killed connection: closed (" .. tostring(msg) .. ")")
  r = actx:sql("scratch", "SELECT 1 AS one")
  t.ok(r and r.rows[1].one == 1, "the next call reconnects")
  t.ok(not c1:is_open(), "the dead handle is closed")
  ctx:close()
  actx:close()
  raw:close()
end)
