-- runbook.sql (raw C module) against a private throwaway mariadbd on 127.0.0.32 and hung TCP
-- servers: auth, refused, connect/read timeouts, syntax errors, multi-statements refused,
-- NULL vs "", integer and other types, hostile strings bound byte-for-byte, password hygiene.
local t = require "tap"
local F = require "fixture_sqlhttp"
local sql = require "runbook.sql"
local core = require "runbook.core"

F.run(t, function()
  local db = F.mariadb()
  local function conn(extra)
    local o = { host = db.host, port = db.port, user = db.user, password = db.password,
                database = db.database, connect_timeout = 3, read_timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return sql.connect(o)
  end

  -- misuse raises
  t.like(select(2, pcall(sql.connect, { host = db.host, user = "x", timout = 3 })),
    "unknown option 'timout'", "connect: unknown option raises")
  t.like(select(2, pcall(sql.connect, { host = db.host })), "'user' is required",
    "connect: user required")
  t.like(select(2, pcall(sql.connect, { host = db.host, user = "x", tls = "yes" })),
    "option 'tls'", "connect: bad tls value raises")

  -- connect, success
  local c, msg, code = conn()
  t.ok(c, "connect to the private server: " .. (msg or ""))
  t.like(tostring(c), "^sql%.conn %(127%.0%.0%.32:%d+%)$", "tostring names the server")
  t.is(c:ping(), true, "ping")
  t.is(c:is_open(), true, "is_open")

  -- wrong password: auth, and the password is never in the message
  local wrong = "Wrong-" .. core.random_hex(8)
  local r
  r, msg, code = conn { password = wrong }
  t.is(r, nil, "wrong password: no connection")
  t.is(code, "auth", "wrong password: code auth")
  t.like(msg, "ERROR 1045 %(28000%)", "wrong password: errno and SQLSTATE in message")
  t.ok(not msg:find(wrong, 1, true), "wrong password: not in the message")
  -- a message that would contain the password (user name == password) is scrubbed
  r, msg, code = conn { user = wrong, password = wrong }
  t.is(code, "auth", "user==password: auth")
  t.ok(not msg:find(wrong, 1, true) and msg:find("***", 1, true),
    "user==password: password replaced by *** in the message")

  -- tls required, the server has none: tls
  r, msg, code = conn { tls = true }
  t.is(code, "tls", "tls=true against a server without TLS: code tls (" .. tostring(msg) .. ")")
  r, msg, code = conn { tls = "verify" }
  t.is(code, "tls", "tls=verify against a server without TLS: code tls (" .. tostring(msg) .. ")")

  -- a server with TLS (self-signed certificate for IP 127.0.0.32)
  local tdb = F.mariadb(true)
  local function tconn(extra)
    local o = { host = tdb.host, port = tdb.port, user = tdb.user, password = tdb.password,
                database = tdb.database, connect_timeout = 3 }
    for k, v in pairs(extra) do o[k] = v end
    return sql.connect(o)
  end
  local tc
  tc, msg = tconn { tls = true }
  local cipher = tc and tc:query("SHOW SESSION STATUS LIKE 'Ssl_cipher'").rows[1].Value
  t.ok(type(cipher) == "string" and #cipher > 0, "tls=true: encrypted (" .. tostring(cipher or msg) .. ")")
  if tc then tc:close() end
  tc, msg, code = tconn { tls = "verify" }
  t.is(code, "tls", "tls=verify with an unknown CA: code tls")
  t.ok(msg and not msg:find(tdb.password, 1, true), "tls failure: no password in the message")
  tc, msg = tconn { tls = "verify", tls_ca = tdb.ca_file }
  t.ok(tc, "tls=verify with the right CA file: connected " .. (msg or ""))
  if tc then tc:close() end

  -- refused
  local t0 = core.now()
  r, msg, code = conn { port = 9, connect_timeout = 60 }
  local took = core.now() - t0
  t.is(code, "refused", "closed port: code refused (" .. tostring(msg) .. ")")
  t.ok(took < 20, ("closed port: fails at once, not after connect_timeout=60 (%.2fs)"):format(took))

  -- a server that accepts TCP and never says hello: connect timeout fires
  local silent = F.httpd("silent")
  t0 = core.now()
  r, msg, code = conn { port = silent, connect_timeout = 1, read_timeout = 60 }
  took = core.now() - t0
  t.is(code, "timeout", "silent server: code timeout")
  t.ok(took >= 0.9 and took < 20, ("silent server: connect_timeout=1 honoured, not read_timeout=60 (%.2fs)"):format(took))
  t.ok(not msg:find(db.password, 1, true), "silent server: no password in message")

  -- a full accept queue: the TCP connect itself times out
  local full = F.httpd("full")
  t0 = core.now()
  r, msg, code = conn { port = full, connect_timeout = 1 }
  took = core.now() - t0
  t.is(code, "timeout", "full accept queue: code timeout (" .. tostring(msg) .. ")")
  t.ok(took >= 0.9 and took < 20, ("full accept queue: connect_timeout honoured (%.2fs; the queue stays full for 300 s)"):format(took))

  -- syntax error: sql, errno and SQLSTATE
  r, msg, code = c:query("SELEC 1")
  t.is(r, nil, "syntax error: nil")
  t.is(code, "sql", "syntax error: code sql")
  t.like(msg, "ERROR 1064 %(42000%)", "syntax error: errno 1064 and SQLSTATE 42000")

  -- scratch table
  assert(c:query([[CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64),
    note MEDIUMTEXT NULL, data MEDIUMBLOB NULL) CHARACTER SET utf8mb4]]))
  r = assert(c:query("INSERT INTO users (name) VALUES (?)", { "seed" }))
  t.is(r.affected, 1, "insert: affected 1")
  t.is(r.insert_id, 1, "insert: insert_id 1")

  -- multi-statements are refused, and the table is still there
  r, msg, code = c:query("SELECT 1; DROP TABLE users")
  t.is(code, "sql", "multi-statement: refused with code sql")
  t.like(msg, "1064", "multi-statement: a syntax error, not executed")
  r = assert(c:query("SELECT COUNT(*) AS n FROM users"))
  t.is(r.rows[1].n, 1, "multi-statement: users table intact")
  r, msg, code = c:query("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE users")
  t.is(code, "sql", "LOAD DATA LOCAL: refused (" .. tostring(msg) .. ")")

  -- NULL vs "" round trip
  assert(c:query("INSERT INTO users (id, name, note) VALUES (?, ?, ?), (?, ?, ?)",
    { 10, "empty", "", 11, "null", sql.NULL }))
  r = assert(c:query("SELECT id, note FROM users WHERE id IN (?, ?) ORDER BY id", { 10, 11 }))
  t.is(r.rows[1].note, "", "'' comes back as the empty string")
  t.is(r.rows[2].note, sql.NULL, "NULL comes back as sql.NULL")
  t.ok(r.rows[1].note ~= sql.NULL and r.rows[2].note ~= "", "NULL and '' are distinct")
  t.is(sql.NULL, require("runbook.json").null, "sql.NULL is json.null")
  t.is(require("runbook.json").encode(r.rows[2]), '{"id":11,"note":null}', "a row encodes to JSON")
  r = assert(c:query("SELECT ? IS NULL AS a, ? IS NULL AS b", { sql.NULL, "" }))
  t.ok(r.rows[1].a == 1 and r.rows[1].b == 0, "bound sql.NULL is NULL, bound '' is not")

  -- integer types
  assert(c:query([[CREATE TABLE ints (ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT,
    i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, y YEAR, b BOOLEAN)]]))
  assert(c:query("INSERT INTO ints VALUES (?,?,?,?,?,?,?,?,?,?)",
    { -128, 255, -32768, -8388608, -2147483648, 4294967295, math.mininteger, 1, 2024, true }))
  assert(c:query("INSERT INTO ints (bi, bu) VALUES (?, 18446744073709551615)", { math.maxinteger }))
  r = assert(c:query("SELECT * FROM ints ORDER BY bi"))
  local row = r.rows[1]
  local all_int = true
  for _, k in ipairs { "ti", "tu", "si", "mi", "i", "iu", "bi", "bu", "y", "b" } do
    if math.type(row[k]) ~= "integer" then all_int = false; t.diag(k .. " is " .. tostring(row[k])) end
  end
  t.ok(all_int, "every integer column comes back as a Lua integer")
  t.ok(row.ti == -128 and row.tu == 255 and row.si == -32768 and row.mi == -8388608,
    "TINYINT/SMALLINT/MEDIUMINT bounds exact")
  t.ok(row.i == -2147483648 and row.iu == 4294967295, "INT and INT UNSIGNED bounds exact")
  t.is(row.bi, math.mininteger, "BIGINT minimum exact")
  t.ok(row.y == 2024 and row.b == 1, "YEAR and BOOLEAN as integers")
  t.is(r.rows[2].bi, math.maxinteger, "BIGINT maximum exact")
  t.is(r.rows[2].bu, "18446744073709551615", "BIGINT UNSIGNED above 2^63-1 as a decimal string")
  t.is(r.columns[1], "ti", "columns lists names in order")
  t.is(#r.columns, 10, "columns has every column")

  -- other types
  r = assert(c:query([[SELECT CAST(12.345 AS DECIMAL(10,3)) AS d, CAST(2.5 AS DOUBLE) AS f,
    CAST('2024-05-06 07:08:09' AS DATETIME) AS dt, CAST('2024-05-06' AS DATE) AS da,
    ? + 0.5 AS x, ? AS s]], { 1, "text" }))
  row = r.rows[1]
  t.is(row.d, "12.345", "DECIMAL as an exact string")
  t.is(row.f, 2.5, "DOUBLE as a number")
  t.is(row.dt, "2024-05-06 07:08:09", "DATETIME as the server's text")
  t.is(row.da, "2024-05-06", "DATE as text")
  t.is(row.s, "text", "string param round trip")

  -- hostile strings, bound, stored and read back byte for byte; the table survives
  local hostile = {
    "O'Brien", "'; DROP TABLE users; --", "\"; DROP TABLE users; --", "$(rm -rf /)", "`id`",
    "back\\slash\\", "\\'", "new\nline\r\n", "nul\0byte", "\0", "%_ like wildcards",
    "é ü 日本 🙂", "' OR '1'='1", "\26 ctrl-z", ("x"):rep(300), ("\0\1\2'\\\""):rep(5000),
  }
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local allbytes = table.concat(bytes)
  local exact, found = true, true
  for i, s in ipairs(hostile) do
    local id = 100 + i
    assert(c:query("INSERT INTO users (id, name, note, data) VALUES (?, ?, ?, ?)",
      { id, "h" .. i, s, s }))
    local back = assert(c:query("SELECT note, data FROM users WHERE id = ?", { id })).rows[1]
    if back.note ~= s or back.data ~= s then
      exact = false
      t.diag(("hostile %d: got %q"):format(i, tostring(back.note):sub(1, 60)))
    end
    local hit = assert(c:query("SELECT id FROM users WHERE note = ?", { s }))
    if not (#hit.rows >= 1 and hit.rows[1].id == id) then found = false end
  end
  t.ok(exact, "hostile strings stored and read back byte for byte (TEXT and BLOB)")
  t.ok(found, "hostile strings as WHERE parameters match only as data")
  assert(c:query("INSERT INTO users (id, data) VALUES (?, ?)", { 300, allbytes }))
  t.is(assert(c:query("SELECT data FROM users WHERE id = ?", { 300 })).rows[1].data, allbytes,
    "all 256 byte values round trip through a BLOB")
  local big = ("0123456789"):rep(20000)
  assert(c:query("INSERT INTO users (id, note) VALUES (?, ?)", { 301, big }))
  t.is(assert(c:query("SELECT note FROM users WHERE id = ?", { 301 })).rows[1].note, big,
    "200 kB text round trip (re-fetch past the first buffer)")
  r = assert(c:query("SHOW TABLES"))
  t.is(#r.rows, 2, "after the hostile strings both tables are still there")

  -- max_rows
  r = assert(c:query("SELECT id FROM users ORDER BY id", nil, { max_rows = 3 }))
  t.is(#r.rows, 3, "max_rows caps the rows")
  t.is(r.truncated, true, "max_rows: truncated flag")
  r = assert(c:query("SELECT id FROM users WHERE id < 11 ORDER BY id", nil, { max_rows = 3 }))
  t.is(r.truncated, nil, "no truncated flag when everything fitted")
  t.is(c:ping(), true, "connection usable after a truncated result")

  -- UPDATE affected
  r = assert(c:query("UPDATE users SET note = ? WHERE id >= ?", { "u", 100 }))
  t.is(r.affected, #hostile + 2, "update: affected rows")

  -- misuse of query raises
  t.like(select(2, pcall(c.query, c, "SELECT ?", {})), "1 placeholders, 0 parameters",
    "placeholder count mismatch raises")
  t.like(select(2, pcall(c.query, c, "SELECT ?", { {} })), "parameter 1: table cannot be bound",
    "a table parameter raises")
  t.like(select(2, pcall(c.query, c, "SELECT 1", nil, { max_row = 1 })), "unknown option 'max_row'",
    "query: unknown option raises")
  t.like(select(2, pcall(c.query, c, {})), "bad argument #%d+ to .*string expected, got table", "non-string SQL raises")
  t.is(c:ping(), true, "connection usable after the raises")

  -- read timeout: a query that takes longer than read_timeout
  local slow = assert(conn { read_timeout = 1 })
  t0 = core.now()
  r, msg, code = slow:query("SELECT SLEEP(40)")
  took = core.now() - t0
  t.is(code, "timeout", "read_timeout: code timeout (" .. tostring(msg) .. ")")
  t.ok(took >= 0.9 and took < 20, ("read_timeout=1 honoured, not the 40 s query (%.2fs)"):format(took))
  t.is(slow:is_open(), false, "after a read timeout is_open() is false")
  r, msg, code = slow:query("SELECT 1")
  t.is(code, "closed", "after a read timeout the connection reports closed")
  t.is(select(3, slow:ping()), "closed", "ping on a lost connection: closed")
  slow:close()

  -- close is idempotent; use after close raises; <close> closes
  c:close()
  c:close()
  t.like(select(2, pcall(c.query, c, "SELECT 1")), "closed sql connection", "use after close raises")
  t.like(tostring(c), "closed", "tostring says closed")
  local kept
  do
    local h <close> = assert(conn())
    kept = h
  end
  t.like(tostring(kept), "closed", "<close> closes the handle")

  -- the unix socket path works too
  local u
  u, msg, code = sql.connect { unix_socket = db.sock, user = db.user, password = db.password,
                               database = db.database }
  t.ok(u and u:query("SELECT 1 AS one").rows[1].one == 1, "unix_socket connection " .. (msg or ""))
  r, msg, code = sql.connect { unix_socket = db.dir .. "/no-such.sock", user = db.user,
                               password = db.password }
  t.is(code, "refused", "unix_socket that does not exist: refused")
  if u then u:close() end
end)
