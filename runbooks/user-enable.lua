-- runbooks/user-enable.lua: the cheat sheet's "user disabled" remedy through the User
-- Management API (PATCH /api/users/<email> {"enabled": true}), verified in the database.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local USER_SQL = "SELECT u.email, d.name AS domain, u.enabled, u.maildir FROM users u "
  .. "JOIN domains d ON u.domain_id = d.id WHERE u.email = ?"

return {
  description = "Enable a disabled mailbox user through the User Management API",
  kind = "remedy",
  help = [[
What it does: reads the user from the mail database (document 1.1). A disabled user
(enabled=0) looks exactly like an unknown one to senders (550 5.1.1 User doesn't exist); only
the database tells them apart. When the user is enabled already, nothing is done (exit 0); a
missing user is pointed at user-create. Otherwise it sends
PATCH /api/users/<email> {"enabled": true} to the User Management API (mail.usermgmt).
What it changes: users.enabled of that one user, through the API only.
How to verify: after --apply it re-reads the row and expects enabled=1.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the disabled address, e.g. info@example.jp" },
  },
  needs = { hosts = { "@mailserver" }, sql = { "@database" }, http = { "@usermgmt" } },   -- its API and database
  examples = {
    "runbook run user-enable --addr info@example.jp",
    "runbook run user-enable --addr info@example.jp --apply",
  },

  run = function(ctx)
    local addr = ctx.args.addr:lower()
    local db, api = ops.db(ctx), ops.usermgmt(ctx)
    local function user_row()
      local u, msg, code = ctx:sql(db, USER_SQL, addr)
      return ops.must(u, msg, code, "SELECT from users").rows[1]
    end
    local function evidence(row)
      return { { host = ops.ms(ctx), source = "sql users",
                 text = ("%s enabled=%s maildir=%s"):format(row.email, tostring(row.enabled), tostring(row.maildir)) } }
    end

    local state = ctx:step("check", function() return { user = user_row() } end,
      "is the user there, and disabled? (document 1.1)")
    if not state then return end
    local row = state.user
    if not row then
      ctx:verdict { status = "problem", cause = "user_missing",
                    message = ("%s does not exist: create it instead"):format(addr),
                    fix = { runbook = "user-create", args = { addr = addr } } }
      return
    end
    if tonumber(row.enabled) == 1 then
      return remedy.nothing_to_do(ctx, ("%s is enabled: nothing to do"):format(addr), evidence(row))
    end

    return remedy.change(ctx, {
      step = "enable", title = "PATCH /api/users/<email> through the User Management API",
      finding = { severity = "warn", cause = "user_disabled", hop = db, evidence = evidence(row),
                  message = ("%s is disabled (enabled=0): its mail is refused as an unknown user"):format(addr) },
      change = { ("users.enabled of %s: 0 -> 1"):format(addr),
                 ('PATCH /api/users/%s {"enabled":true}'):format(ctx:url_escape(addr)) },
      write = function()
        local path = { "api", "users", addr }
        return ctx:http(api, "PATCH", path, { enabled = true },
          { before = path, target = ("%s: user %s enabled"):format(api, addr) })
      end,
      what = "user " .. addr,
      dry = { cause = "user_disabled", message = ("%s is disabled"):format(addr) },
      verify_title = "re-read enabled from the database",
      verify = function()
        local again = user_row()
        if not again or tonumber(again.enabled) ~= 1 then
          return { fixed = false, hop = db, message = ("%s is not enabled after the API call"):format(addr),
                   why = ("after the API call %s is still %s"):format(addr, again and "disabled" or "missing") }
        end
        return { fixed = true, message = ("%s enabled"):format(addr), evidence = evidence(again) }
      end,
    })
  end,
}
