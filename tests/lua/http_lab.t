-- ctx:http against the lab's real User Management API (http://127.0.0.20:5001) and, for the
-- remedy "user missing", the whole round: dry run (nothing created), apply POST /api/users (201),
-- the user visible through the API and in MariaDB, the password in no event or journal line,
-- then the transient user removed again through ctx:sql_write so the lab is left as found.
require("rblab").locked("exclusive", "http lab test")   -- writes users through the API: the exclusive lab test lock
local t = require "tap"
local F = require "fixture_sqlhttp"
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local json = require "runbook.json"
local core = require "runbook.core"

F.run(t, function()
  local lab, why = F.lab()
  if not t.ok(lab and lab.LAB_API_URL, "the lab is up: " .. (why or "")) then return end
  local dir = "/tmp/runbook-test-http-lab-" .. core.random_hex(6)
  os.execute("mkdir -p " .. dir)
  local journal = dir .. "/audit.jsonl"
  local events = {}
  local function inv()
    return assert(inventory.validate {
      defaults = { timeout = 10, connect_timeout = 5 },
      audit = { journal = journal },
      http = { usermgmt = { base_url = lab.LAB_API_URL } },
      databases = { mail = { host = lab.LAB_DB_HOST, port = math.tointeger(tonumber(lab.LAB_DB_PORT)),
        user = lab.LAB_DB_USER, database = lab.LAB_DB_NAME, password_file = lab.LAB_DB_PASSWORD_FILE } },
    })
  end
  local sink = function(ev) events[#events + 1] = ev end
  local ctx = context.new { inventory = inv(), sinks = { sink } }
  local actx = context.new { inventory = inv(), apply = true, yes = true, sinks = { sink } }
  local function all_text()
    local parts = {}
    for _, ev in ipairs(events) do parts[#parts + 1] = json.encode(ev) end
    parts[#parts + 1] = F.read_file(journal) or ""
    return table.concat(parts, "\n")
  end

  -- reads
  local r, msg, code, resp = ctx:http("usermgmt", "GET", "/api/health")
  t.ok(r and r.status == 200 and r.data.status == "ok", "GET /api/health: " .. (msg or ""))
  r, msg = ctx:http("usermgmt", "GET", { "api", "users", lab.LAB_USER })
  t.ok(r and r.data.email == lab.LAB_USER and r.data.enabled == true, "GET /api/users/<lab user>: enabled")
  r = assert(ctx:http("usermgmt", "GET", "/api/domains"))
  local names = {}
  for _, d in ipairs(r.data) do names[d.name] = true end
  t.ok(names["example.test"] and names["shop.test"], "GET /api/domains lists the hosted domains")
  r, msg, code, resp = ctx:http("usermgmt", "GET", { "api", "users", "nobody-" .. core.random_hex(4) .. "@example.test" })
  t.is(code, "http", "unknown user: code http")
  t.is(msg, "HTTP 404: user not found", "unknown user: HTTP 404 with the API's message")
  t.is(resp and resp.status, 404, "unknown user: status in the 4th value")

  -- the remedy: create a missing user (a transient one in shop.test)
  local email = ("rbtest-%s@shop.test"):format(core.random_hex(5))
  local pw = "Pw-" .. core.random_hex(10)
  local body = { email = email, password = pw, domain = "shop.test" }
  r, msg, code = ctx:http("usermgmt", "POST", "/api/users", body, { before = { "api", "users", email } })
  t.is(code, "dryrun", "POST without apply: dryrun")
  local would
  for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
  t.ok(would and would.before and would.before.status == 404, "would: before shows the user missing (404)")
  t.like(would and would.detail or "", '"password":"%*%*%*"', "would: password shown as ***")
  r, msg, code = ctx:http("usermgmt", "GET", { "api", "users", email })
  t.is(code, "http", "after the dry run the user still does not exist")

  r, msg, code = actx:http("usermgmt", "POST", "/api/users", body, { before = { "api", "users", email } })
  t.ok(r and r.status == 201, "apply: POST /api/users -> 201 " .. (msg or ""))
  t.ok(r and r.data.email == email and r.data.password == nil, "apply: the API returns the user, never the password")
  r = assert(ctx:sql("mail", [[SELECT u.email, d.name AS domain, u.enabled FROM users u
    JOIN domains d ON u.domain_id = d.id WHERE u.email = ?]], email))
  t.ok(#r.rows == 1 and r.rows[1].domain == "shop.test" and r.rows[1].enabled == 1,
    "the new user is in MariaDB, enabled, in shop.test")
  r, msg, code, resp = actx:http("usermgmt", "POST", "/api/users", body)
  t.ok(code == "http" and resp and resp.status == 409, "creating it again: HTTP 409 (" .. tostring(msg) .. ")")
  local rec = json.decode((F.read_file(journal) or ""):match("^[^\n]+") or "null")
  t.ok(type(rec) == "table" and rec.op == "http.post" and rec.before and rec.before.status == 404
    and type(rec.after) == "table" and rec.after.email == email, "journal: the POST with before (404) and after (the user)")
  t.ok(not all_text():find(pw, 1, true), "the new user's password appears in no event or journal line")

  -- leave the lab as found
  r, msg, code = actx:sql_write("mail", "DELETE FROM users WHERE email = ?", { email },
    { before = { "SELECT email FROM users WHERE email = ?", { email } } })
  t.ok(r and r.affected == 1 and #r.after == 0, "transient user removed through sql_write: " .. (msg or ""))
  ctx:close()
  actx:close()
  os.execute("rm -rf " .. dir)
end)
