-- runbooks/auth-cache-flush.lua: issue 11's "user enabled but Dovecot still refuses it" remedy:
-- Dovecot answers from its auth cache (a negative entry lives auth_cache_negative_ttl), so a
-- user fixed in the database stays unknown to it until the entry expires or is flushed
-- (doveadm auth cache flush ADDR).
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local USER_SQL = "SELECT u.email, u.enabled FROM users u WHERE u.email = ?"
local EX_NOUSER = 67          -- doveadm's exit status for "user doesn't exist"

return {
  description = "Flush Dovecot's auth cache for one address (doveadm auth cache flush) when it still refuses a user the database has enabled",
  kind = "remedy",
  help = [[
What it does: reads the user's row from the mail database (exists? enabled?), asks Dovecot
for the user as the LMTP delivery does (`doveadm user ADDR`, through the auth process and its
cache) and reads the cache settings (doveconf auth_cache_size, auth_cache_ttl,
auth_cache_negative_ttl). When the database has the user enabled but Dovecot answers "user
doesn't exist", the answer comes from a negative cache entry made while the user was missing
or disabled: Postfix's LMTP delivery is refused (550 5.1.1) until it expires.
Nothing to do (exit 0): Dovecot finds the user. Not this remedy (exit 1, nothing changed): the
user is missing from the database (user-create) or disabled there (user-enable).
What it changes: `doveadm auth cache flush ADDR` in the Dovecot container: that user's cache
entries only. Without --apply it only prints the command.
How to verify: after --apply it asks `doveadm user ADDR` again and expects the user found;
mail deferred meanwhile goes out at the next queue run (queue-flush), new mail lands in INBOX.]],
  args = {
    { name = "addr", type = "email", required = true, help = "the address Dovecot refuses, e.g. info@example.jp" },
  },
  needs = { services = { "@mailserver/dovecot" }, sql = { "@database" } },   -- its Dovecot container and the mail database
  examples = {
    "runbook run auth-cache-flush --addr info@example.jp",
    "runbook run auth-cache-flush --addr info@example.jp --apply",
  },

  run = function(ctx)
    local addr = ctx.args.addr:lower()
    local svc = ops.need_service(ctx, ops.dovecot(ctx))
    local db = ops.db(ctx)
    local host = ops.ms(ctx)

    -- dovecot_user() -> { found = bool, text = what doveadm said }
    local function dovecot_user()
      local r, msg, code = ctx:service_exec(svc, { "doveadm", "user", addr })
      r = ops.must(r, msg, code, "doveadm user on " .. svc)
      local out = ((r.stdout or "") .. (r.stderr or "")):gsub("%s+$", "")
      if r.status == 0 then return { found = true, text = out } end
      if r.status == EX_NOUSER or out:find("doesn't exist", 1, true) then return { found = false, text = out } end
      error(("doveadm user %s on %s: exit %s: %s"):format(addr, svc, tostring(r.status), out), 0)
    end
    local function ev(d) return { host = host, source = "doveadm user " .. addr, text = d.text:gsub("\n", "; ") } end

    local state = ctx:step("check", function()
      local u, msg, code = ctx:sql(db, USER_SQL, addr)
      local row = ops.must(u, msg, code, "SELECT from users").rows[1]
      ctx:note(row and ("database: %s enabled=%s"):format(row.email, tostring(row.enabled)) or ("database: no row for " .. addr))
      local d = dovecot_user()
      ctx:note(("Dovecot: %s"):format(d.found and "finds the user" or d.text))
      local c, cmsg = ctx:service_exec(svc, { "doveconf", "auth_cache_size", "auth_cache_ttl", "auth_cache_negative_ttl" })
      if c and c.status == 0 then
        ctx:note("auth cache: " .. c.stdout:gsub("%s+$", ""):gsub("\n", ", "))
      else
        ctx:note("auth cache settings unknown: " .. tostring(c and c.stderr or cmsg))
      end
      return { row = row, dovecot = d }
    end, "the user in the database and in Dovecot's answer (doveadm user), the cache settings")
    if not state then return end
    local row, d = state.row, state.dovecot
    if d.found then
      return remedy.nothing_to_do(ctx, ("Dovecot finds %s: nothing to do"):format(addr), { ev(d) })
    end
    if not row then
      ctx:verdict { status = "problem", cause = "user_missing", evidence = { ev(d) },
                    message = ("%s is not in the database either: flushing the cache would not help; create the user"):format(addr),
                    fix = { runbook = "user-create", args = { addr = addr } } }
      return
    end
    if tonumber(row.enabled) ~= 1 then
      ctx:verdict { status = "problem", cause = "user_disabled", evidence = { ev(d) },
                    message = ("%s is disabled in the database: flushing the cache would not help; enable the user"):format(addr),
                    fix = { runbook = "user-enable", args = { addr = addr } } }
      return
    end

    local dbev = { host = host, source = "sql users", text = ("%s enabled=%s"):format(row.email, tostring(row.enabled)) }
    return remedy.change(ctx, {
      step = "flush", title = "doveadm auth cache flush ADDR in the Dovecot container",
      finding = { severity = "warn", cause = "auth_negative_cache", hop = svc, evidence = { dbev, ev(d) },
                  message = ("%s is enabled in the database but Dovecot answers that it does not exist: a negative auth cache entry"):format(addr) },
      change = ("auth cache of %s: negative entry -> flushed"):format(addr),
      write = function()
        local r, msg, code = ctx:service_exec(svc, { "doveadm", "auth", "cache", "flush", addr })
        if r and r.status ~= 0 then r, msg, code = nil, ((r.stderr or "") .. (r.stdout or "")):gsub("%s+$", ""), "io" end
        return r, msg, code
      end,
      what = "the auth cache of " .. addr,
      dry = { cause = "auth_negative_cache", message = ("Dovecot still refuses %s from its auth cache"):format(addr) },
      verify_title = "ask Dovecot again (doveadm user)",
      verify = function()
        local again = dovecot_user()
        if not again.found then
          return { fixed = false, hop = svc, evidence = { ev(again) },
                   message = ("Dovecot still does not find %s after the flush: not the cache (compare its userdb query with the row)"):format(addr),
                   why = ("after the flush doveadm user %s says: %s"):format(addr, again.text) }
        end
        return { fixed = true, message = ("auth cache of %s flushed: Dovecot finds the user"):format(addr), evidence = { ev(again) } }
      end,
    })
  end,
}
