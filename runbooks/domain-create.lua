-- runbooks/domain-create.lua: the cheat sheet's "domain missing" remedy through the User
-- Management API (POST /api/domains), checked before and verified after in the database.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

return {
  description = "Create a mail domain through the User Management API (POST /api/domains)",
  kind = "remedy",
  help = [[
What it does: looks the domain up in the mail database (SELECT id,name FROM domains WHERE
name=?) and in the API (GET /api/domains). When it exists, nothing is done (exit 0). Otherwise
it sends POST /api/domains {"name": DOMAIN} to the User Management API named by the
inventory's mail.usermgmt (default "usermgmt").
What it changes: one row in the domains table, through the API only (never SQL writes).
Without --apply it only prints the request it would send.
How to verify: after --apply it re-reads the row from the database (mail.database, default
"mail"); `runbook run domain-create --domain D` again reports it as present (exit 0).
Then add users with `runbook run user-create --addr user@D`.]],
  args = {
    { name = "domain", type = "domain", required = true, help = "the mail domain to create, e.g. example.jp" },
  },
  needs = { hosts = { "@mailserver" }, sql = { "@database" }, http = { "@usermgmt" } },   -- its API and database
  examples = {
    "runbook run domain-create --domain example.jp",
    "runbook run domain-create --domain example.jp --apply",
  },

  run = function(ctx)
    local domain = ctx.args.domain
    local db, api = ops.db(ctx), ops.usermgmt(ctx)

    local function domain_row()
      local r, msg, code = ctx:sql(db, "SELECT id, name FROM domains WHERE name = ?", domain)
      return ops.must(r, msg, code, "SELECT from domains").rows[1]
    end

    local state = ctx:step("check", function()
      local found = domain_row()
      local list, msg, code = ctx:http(api, "GET", "/api/domains")
      if list and type(list.data) == "table" then
        local in_api = false
        for _, d in ipairs(list.data) do
          if type(d) == "table" and tostring(d.name):lower() == domain then in_api = true end
        end
        if in_api ~= (found ~= nil) then
          ctx:finding { severity = "warn", cause = "api_db_disagree", hop = api,
                        message = ("the API %s %s, the database %s"):format(in_api and "lists" or "does not list",
                          domain, found and "has it" or "does not") }
        end
      elseif not list then
        ctx:finding { severity = "warn", cause = "api_unavailable", hop = api,
                      message = ("GET /api/domains failed: %s (%s)"):format(tostring(msg), tostring(code)) }
      end
      return { row = found }
    end, "is the domain in the database and the API? (document 1.1)")
    if not state then return end          -- the check failed: the step shows why (exit 3)
    local row = state.row

    if row then
      return remedy.nothing_to_do(ctx, ("domain %s exists (id %s): nothing to do"):format(domain, tostring(row.id)),
        { { host = ops.ms(ctx), source = "sql domains", text = ("id=%s name=%s"):format(tostring(row.id), row.name) } })
    end

    return remedy.change(ctx, {
      step = "create", title = "POST /api/domains through the User Management API",
      finding = { severity = "warn", cause = "domain_missing", hop = db,
                  message = ("domain %s is not in the domains table"):format(domain) },
      change = ('POST /api/domains {"name":"%s"}'):format(domain),
      write = function()
        local res, msg, code, resp = ctx:http(api, "POST", "/api/domains", { name = domain },
          { target = ("%s: domain %s"):format(api, domain) })
        if res == nil and code == "http" and resp and resp.status == 409 then
          ctx:note("the API answers 409: the domain was created meanwhile")
          return true
        end
        return res, msg, code
      end,
      what = "domain " .. domain,
      dry = { cause = "domain_missing", message = ("domain %s is missing"):format(domain) },
      verify_title = "re-read the domain from the database",
      verify = function()
        local again = domain_row()
        if not again then
          return { fixed = false, hop = db, message = "domain still missing after the API call",
                   why = ("the API accepted the request but %s is still not in the domains table"):format(domain) }
        end
        return { fixed = true, message = ("domain %s created (id %s)"):format(domain, tostring(again.id)),
                 evidence = { { host = ops.ms(ctx), source = "sql domains", text = ("id=%s name=%s"):format(tostring(again.id), again.name) } } }
      end,
    })
  end,
}
