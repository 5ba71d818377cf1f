-- runbooks/user-create.lua: the cheat sheet's "user missing" remedy through the User Management
-- API (POST /api/users), with the password from the environment, a 0600 file or a no-echo
-- prompt: never from the command line, and masked in every output.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local USER_SQL = "SELECT u.email, d.name AS domain, u.enabled, u.maildir FROM users u "
  .. "JOIN domains d ON u.domain_id = d.id WHERE u.email = ?"

return {
  description = "Create a mailbox user through the User Management API (POST /api/users)",
  kind = "remedy",
  help = [[
What it does: checks in the mail database that the address's domain exists and the user does
not. A missing domain is reported with the command that creates it (domain-create): this
runbook never creates domains. An existing user is left alone (exit 0; a disabled one is
pointed at user-enable). Otherwise it sends POST /api/users {"email","password","domain"}.
The password: --password-env NAME (an environment variable), --password-file PATH (a file
readable only by its owner), else a no-echo prompt on the terminal. There is no --password:
a password on a command line ends up in shell history and process lists. It is shown as ***
everywhere (output, --trace, --report, the audit journal).
What it changes: one row in the users table, through the API only.
How to verify: after --apply it re-reads the user from the database and expects enabled=1
and a maildir like domain/user/.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the address to create, e.g. info@example.jp" },
    { name = "password-env", type = "string", pattern = "^[%a_][%w_]*$",
      help = "name of an environment variable holding the new password" },
    { name = "password-file", type = "path", help = "file (mode 0600) holding the new password" },
  },
  needs = { hosts = { "@mailserver" }, sql = { "@database" }, http = { "@usermgmt" } },   -- its API and database
  examples = {
    "NEWPW=... runbook run user-create --addr info@example.jp --password-env NEWPW",
    "runbook run user-create --addr info@example.jp --password-file ~/.secrets/info.pw --apply",
    "runbook run user-create --addr info@example.jp --apply      # asks for the password",
  },

  run = function(ctx)
    local addr = ctx.args.addr:lower()
    local domain = addr:match("@(.+)$")
    local db, api = ops.db(ctx), ops.usermgmt(ctx)
    if ctx.args["password-env"] and ctx.args["password-file"] then
      ctx:verdict { status = "problem", cause = "usage",
                    message = "give the password either through --password-env or --password-file, not both" }
      return
    end

    local state = ctx:step("check", function()
      local d, msg, code = ctx:sql(db, "SELECT id, name FROM domains WHERE name = ?", domain)
      d = ops.must(d, msg, code, "SELECT from domains")
      local u
      u, msg, code = ctx:sql(db, USER_SQL, addr)
      u = ops.must(u, msg, code, "SELECT from users")
      return { domain = d.rows[1], user = u.rows[1] }
    end, "do the domain and the user exist? (document 1.1)")
    if not state then return end

    if not state.domain then
      ctx:finding { severity = "fail", cause = "domain_missing", hop = db,
                    message = ("domain %s does not exist: create it first"):format(domain),
                    fix = { runbook = "domain-create", args = { domain = domain } } }
      ctx:verdict { status = "problem", cause = "domain_missing",
                    message = ("cannot create %s: its domain %s is missing (this runbook does not create domains)"):format(addr, domain),
                    fix = { runbook = "domain-create", args = { domain = domain } } }
      return
    end
    if state.user then
      local u = state.user
      local ev = { { host = ops.ms(ctx), source = "sql users", text = ("%s enabled=%s maildir=%s"):format(u.email, tostring(u.enabled), tostring(u.maildir)) } }
      if tonumber(u.enabled) == 1 then
        remedy.nothing_to_do(ctx, ("%s exists and is enabled: nothing to do"):format(addr), ev)
      else
        ctx:verdict { status = "problem", cause = "user_disabled", evidence = ev,
                      message = ("%s exists but is disabled: enable it instead of creating it"):format(addr),
                      fix = { runbook = "user-enable", args = { addr = addr } } }
      end
      return
    end

    local password = ctx:step("password", function()
      local src = ctx.args["password-env"] and { env = ctx.args["password-env"] }
        or ctx.args["password-file"] and { file = ctx.args["password-file"] }
        or { prompt = ("new password for %s: "):format(addr) }
      local pw, msg, code = ctx:read_secret(src)
      if not pw then
        ctx:finding { severity = "fail", cause = "no_password", message = ("no password: %s"):format(msg) }
        return nil
      end
      return pw
    end, "the new password (environment, 0600 file or terminal; never the command line)")
    if not password then
      ctx:verdict { status = "problem", cause = "no_password",
                    message = "no password for the new user: use --password-env NAME or --password-file PATH (0600), or run on a terminal to be asked" }
      return
    end

    return remedy.change(ctx, {
      step = "create", title = "POST /api/users through the User Management API",
      finding = { severity = "warn", cause = "user_missing", hop = db, message = ("user %s does not exist"):format(addr) },
      change = ('POST /api/users {"email":"%s","password":"***","domain":"%s"}'):format(addr, domain),
      write = function()
        local res, msg, code, resp = ctx:http(api, "POST", "/api/users",
          { email = addr, password = password, domain = domain },
          { target = ("%s: user %s"):format(api, addr) })
        if res == nil and code == "http" and resp and resp.status == 409 then
          ctx:note("the API answers 409: the user was created meanwhile")
          return true
        end
        return res, msg, code
      end,
      what = "user " .. addr,
      dry = { cause = "user_missing", message = ("user %s is missing"):format(addr) },
      verify_title = "re-read the user from the database",
      verify = function()
        local u, msg, code = ctx:sql(db, USER_SQL, addr)
        local row = ops.must(u, msg, code, "SELECT from users").rows[1]
        local want_maildir = ("%s/%s/"):format(domain, addr:match("^(.-)@"))
        if not row or tonumber(row.enabled) ~= 1 then
          return { fixed = false, hop = db, message = ("user %s not usable after the API call"):format(addr),
                   why = ("after the API call %s is %s"):format(addr, row and "disabled" or "still missing") }
        end
        if row.maildir ~= want_maildir then
          ctx:finding { severity = "warn", cause = "maildir_unexpected", hop = db,
                        message = ("maildir is %q, the document expects %q"):format(tostring(row.maildir), want_maildir) }
        end
        return { fixed = true, message = ("user %s created"):format(addr),
                 evidence = { { host = ops.ms(ctx), source = "sql users", text = ("%s enabled=%s maildir=%s"):format(row.email, tostring(row.enabled), tostring(row.maildir)) } } }
      end,
    })
  end,
}
