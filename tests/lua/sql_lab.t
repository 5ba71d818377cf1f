-- ctx:sql / ctx:sql_write against the lab's real MariaDB ("dell", mailserver_usermgmt): the
-- operators' check 1.1 (domain row; user row with enabled and maildir), a wrong password to the
-- real server, and a dry-run write that leaves the row as it was.
require("rblab").locked("shared", "sql lab test")   -- re-runs this file under the lab's test lock
local t = require "tap"
local F = require "fixture_sqlhttp"
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local json = require "runbook.json"
local sql = require "runbook.sql"
local core = require "runbook.core"

F.run(t, function()
  local lab, why = F.lab()
  if not t.ok(lab and lab.LAB_DB_HOST, "the lab is up: " .. (why or "")) then return end
  local events = {}
  local ctx = context.new {
    inventory = assert(inventory.validate {
      defaults = { timeout = 10, connect_timeout = 5 },
      databases = { mail = { host = lab.LAB_DB_HOST, port = math.tointeger(tonumber(lab.LAB_DB_PORT)),
        user = lab.LAB_DB_USER, database = lab.LAB_DB_NAME, password_file = lab.LAB_DB_PASSWORD_FILE,
        tls = false } },
    }),
    sinks = { function(ev) events[#events + 1] = ev end },
  }
  local user, domain = lab.LAB_USER, lab.LAB_USER:match("@(.+)$")

  -- check 1.1, as the operators' document writes it
  local r, msg, code = ctx:sql("mail", "SELECT id,name FROM domains WHERE name=?", domain)
  t.ok(r, "domain query: " .. (msg or ""))
  t.is(r and #r.rows, 1, "the domain row exists")
  t.is(r and r.rows[1].name, domain, "domain name matches")
  t.is(r and math.type(r.rows[1].id), "integer", "domain id is an integer")
  r, msg = ctx:sql("mail", [[SELECT u.email, d.name, u.enabled, u.maildir FROM users u
    JOIN domains d ON u.domain_id=d.id WHERE u.email=?]], user)
  t.ok(r, "user query: " .. (msg or ""))
  local row = r and r.rows[1] or {}
  t.is(row.email, user, "the user row exists")
  t.is(row.enabled, 1, "enabled = 1 (an integer)")
  t.like(row.maildir, "^" .. domain:gsub("%p", "%%%0") .. "/[^/]+/$", "maildir like dom/user/")
  t.is(r and r.columns[2], "name", "columns in select order")
  r = assert(ctx:sql("mail", "SELECT email FROM users WHERE email=?", "nobody-" .. core.random_hex(4) .. "@" .. domain))
  t.is(#r.rows, 0, "an unknown user: zero rows, not an error")
  local pw = F.read_file(lab.LAB_DB_PASSWORD_FILE):gsub("%s+$", "")
  local all = {}
  for _, ev in ipairs(events) do all[#all + 1] = json.encode(ev) end
  t.ok(not table.concat(all, "\n"):find(pw, 1, true), "the lab's DB password appears in no event")

  -- dry-run write: the would-record shows the current row, the row does not change
  events = {}
  r, msg, code = ctx:sql_write("mail", "UPDATE users SET enabled = ? WHERE email = ?", { 0, user },
    { before = { "SELECT email, enabled FROM users WHERE email = ?", { user } } })
  t.is(code, "dryrun", "sql_write without apply: dryrun")
  local would
  for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
  t.ok(would and would.before and would.before[1].enabled == 1, "would: before rows show enabled = 1")
  r = assert(ctx:sql("mail", "SELECT enabled FROM users WHERE email = ?", user))
  t.is(r.rows[1].enabled, 1, "the user is still enabled after the dry run")

  -- the real server: wrong password, and the password is not in the message
  local wrong = "Wrong-" .. core.random_hex(6)
  local c
  c, msg, code = sql.connect { host = lab.LAB_DB_HOST, port = math.tointeger(tonumber(lab.LAB_DB_PORT)),
    user = lab.LAB_DB_USER, password = wrong, database = lab.LAB_DB_NAME, connect_timeout = 5 }
  t.is(code, "auth", "wrong password to the lab DB: auth")
  t.ok(msg and not msg:find(wrong, 1, true), "wrong password not in the message")
  ctx:close()
end)
