-- runbooks/container-restart.lua: the cheat sheet's "Dovecot LMTP down" remedy
-- (`docker compose restart dovecot`), and the same for the MX's Postfix container or any
-- other container service of the inventory.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local WAIT_PORT = 20   -- seconds to wait for the daemon to answer after the restart
local WAIT_USERDB = 30 -- after the mail database: seconds to wait for Dovecot to find a user again

-- After a restart of the mail database, "answering" means Dovecot finds users again, not only
-- that the port is open. While the database was away, and right after it comes back, Dovecot
-- 2.3.19 can answer 550 5.1.1 "User doesn't exist" for a valid user (its auth worker is not
-- reconnected yet: "Could not escape string: Not connected to database") and its auth cache keeps
-- that negative answer (auth_cache_negative_ttl, an hour in the lab): a permanent bounce for a
-- transient fault, for as long as the cache lasts. So the restart of the database is followed by
-- `doveadm reload` (fresh auth processes: no stale connection, an empty cache) and the verify
-- step waits until `doveadm user` finds one enabled user again.
-- users_answer(ctx, spec) -> nil (nothing to wait for) | true | false, why
-- dovecot_behind(ctx, spec) -> the Dovecot service that looks users up in this database, or nil
-- (spec is not the mail database's container, or the inventory has no Dovecot)
local function dovecot_behind(ctx, spec)
  local svc = ops.service_of(ctx, spec) or {}
  local kind = svc.kind or spec:match("/(.*)$")
  local dc = ops.dovecot(ctx)
  local db = ctx.inventory.databases and ctx.inventory.databases[ops.db(ctx)]
  if kind ~= "mariadb" or not db or not ops.service_of(ctx, dc) then return nil end
  return dc
end

local function users_answer(ctx, spec)
  local dc = dovecot_behind(ctx, spec)
  if not dc then return nil end
  local u, msg, code = ctx:sql(ops.db(ctx), "SELECT email FROM users WHERE enabled = 1 ORDER BY email LIMIT 1")
  if not u then return false, ("cannot read an enabled user to ask Dovecot about (SELECT email FROM users): %s (%s)"):format(tostring(msg), tostring(code)) end
  local email = u.rows[1] and u.rows[1].email
  if not email then return nil end   -- no enabled user to look up: nothing Dovecot could bounce
  local t0, why = ctx:elapsed(), nil
  repeat
    local r, umsg, ucode = ctx:doveadm_user(dc, email, { timeout = 5 })
    if r and r.found then
      ctx:note(("%s finds %s again (doveadm user)"):format(dc, email))
      return true
    end
    why = r and ("doveadm user %s: not found"):format(email) or ("doveadm user %s: %s (%s)"):format(email, tostring(umsg), tostring(ucode))
    ctx:progress(("waiting for %s to find users again: %s"):format(dc, why))
    ops.pause(ctx, 1)
  until ctx:elapsed() - t0 > WAIT_USERDB
  return false, ("%s does not find %s %ds after the database came back: %s"):format(dc, email, WAIT_USERDB, why)
end

return {
  description = "Restart a mail service's container (docker compose restart / docker restart) and check it answers",
  kind = "remedy",
  help = [[
What it does: reads the container's state (docker inspect) and, where the inventory says
where the service answers, tries a TCP connect from its own host: Postfix on :25, Dovecot on
the LMTP next hop of mail.relay_transport, MariaDB on the mail database's port. A container
that runs, is not unhealthy and answers needs nothing (exit 0) unless --force is given.
What it changes: `docker restart` of that one container (the document's
`docker compose restart dovecot`; for ec2 `docker restart mailserver-postfix`). A stopped
container is started by it. For the mail database (mail.database's MariaDB) it then runs
`doveadm reload` in the mail server's Dovecot once the database answers: fresh auth processes,
so no connection or cached "user doesn't exist" from the outage survives (Dovecot 2.3.19 can
answer that for valid users right after the database returns, and caches it).
Without --apply it only shows the commands and the current state.
How to verify: after --apply it waits until the container runs again and the port answers
(up to 20 s); after the mail database it also waits until Dovecot finds an enabled user again
(`doveadm user`, up to 30 s: right after MariaDB returns, Dovecot 2.3.19 can bounce a valid
user with 550 5.1.1 while it reconnects, and cache that). Then it reports the new state; mail that waited in a
queue goes out at the next retry, or flush it with queue-flush.]],
  args = {
    { name = "service", type = "service", required = true,
      help = "HOST/SERVICE from the inventory, e.g. dell/dovecot or ec2/postfix" },
    { name = "force", type = "boolean", help = "restart even when the service looks healthy" },
  },
  hosts = {},                 -- whichever host --service names
  examples = {
    "runbook run container-restart --service dell/dovecot",
    "runbook run container-restart --service ec2/postfix --apply",
    "runbook run container-restart --service dell/mariadb --force --apply",
  },

  run = function(ctx)
    local spec = ops.need_service(ctx, ctx.args.service)
    local host = spec:match("^(.-)/")
    local addr, port, proto = ops.service_port(ctx, spec)

    local function answers()
      if not addr then return nil end
      return ops.dial(ctx, host, addr, port)
    end

    local state = ctx:step("check", function()
      local st, msg, code = ctx:container_state(spec)
      if not st then
        if code == "notfound" then return { absent = true, msg = msg } end
        error(("cannot read the state of %s: %s (%s)"):format(spec, tostring(msg), tostring(code)), 0)
      end
      ctx:note(("%s: container %s %s%s, started %s, restarts %s"):format(spec, st.name or "?",
        st.running and "running" or ("not running (" .. tostring(st.status) .. ", exit " .. tostring(st.exit_code) .. ")"),
        st.health and (", health " .. tostring(st.health)) or "", tostring(st.started_at), tostring(st.restart_count)))
      local ok, pmsg, pcode
      if st.running then
        ok, pmsg, pcode = answers()
        if ok == true then ctx:note(("%s answers on %s:%d (%s)"):format(spec, addr, port, proto))
        elseif ok == false then ctx:note(("%s does not answer on %s:%d (%s): %s"):format(spec, addr, port, proto, tostring(pmsg))) end
      end
      return { st = st, answers = ok, port_msg = pmsg, port_code = pcode }
    end, "container state and whether the service answers (document 4: docker compose ps)")
    if not state then return end
    if state.absent then
      ctx:verdict { status = "escalate", cause = "container_missing",
                    message = ("%s has no container (%s): it must be created (docker compose up -d), which this runbook does not do"):format(spec, tostring(state.msg)) }
      return
    end

    local st = state.st
    local why
    if not st.running then why = ("the container is %s"):format(tostring(st.status))
    elseif st.health == "unhealthy" then why = "the container reports unhealthy"
    elseif state.answers == false then why = ("it does not answer on %s:%d (%s)"):format(addr, port, tostring(state.port_code))
    end
    if not why and not ctx.args.force then
      ctx:verdict { status = "healthy", message = ("%s is running%s: nothing to do (use --force to restart anyway)"):format(spec,
        state.answers and (" and answers on %s:%d"):format(addr, port) or "") }
      return
    end

    -- wait_port() -> true | false, why: the daemon answers on its port (up to WAIT_PORT)
    local function wait_port()
      if not addr then return true end
      local t0 = ctx:elapsed()
      local ok, pmsg
      repeat
        ok, pmsg = answers()
        if not ok then
          ctx:progress(("waiting for %s:%d"):format(addr, port))
          ops.pause(ctx, 1)
        end
      until ok or ctx:elapsed() - t0 > WAIT_PORT
      if ok then return true end
      return false, ("%s runs but does not answer on %s:%d after %ds: %s"):format(spec, addr, port, WAIT_PORT, tostring(pmsg))
    end

    local dc = dovecot_behind(ctx, spec)
    local restart = function() return ctx:container_restart(spec) end
    local writes
    if dc then
      -- the mail database: then Dovecot's auth processes afresh, once the database answers
      writes = function(written)
        local res, rmsg, rcode = restart()
        local o = written(res, rmsg, rcode, "container of " .. spec)
        if o ~= "applied" and o ~= "dryrun" then return o end
        if o == "applied" and not wait_port() then return o end   -- the verify step says why
        ctx:note(("%s: auth processes -> restarted (doveadm reload): no connection or cached answer from while the database was away"):format(dc))
        local r, msg, code = ctx:service_exec(dc, { "doveadm", "reload" })
        if r and r.status ~= 0 then r, msg, code = nil, ((r.stderr or "") .. (r.stdout or "")):gsub("%s+$", ""), "io" end
        local o2 = written(r, msg, code, "the auth service of " .. dc)
        return o == "dryrun" and o or o2
      end
    end

    return remedy.change(ctx, {
      step = "restart", title = "docker restart (document: docker compose restart dovecot)" ..
        (dc and ("; then doveadm reload in " .. dc) or ""),
      finding = why and { severity = "warn", cause = "service_down", hop = spec, message = ("%s: %s"):format(spec, why) } or nil,
      change = ("%s: %s -> running (restarted)"):format(spec, st.running and "running" or tostring(st.status)),
      write = not writes and restart or nil,
      writes = writes,
      what = "container of " .. spec,
      dry = { status = why and "problem" or "healthy", cause = why and "service_down" or nil,
              message = ("%s would be restarted"):format(spec) },
      verify_title = "running again, and answering",
      verify = function()
        local now, msg, code = ctx:container_state(spec)
        now = ops.must(now, msg, code, "docker inspect " .. spec)
        if not now.running then
          return { fixed = false, status = "escalate", hop = spec,
                   why = ("%s is %s after the restart (exit %s)"):format(spec, tostring(now.status), tostring(now.exit_code)),
                   message = ("%s does not stay up: read its log (docker logs)"):format(spec) }
        end
        local ok, pwhy = wait_port()
        if not ok then
          return { fixed = false, hop = spec, message = ("%s does not answer after the restart"):format(spec), why = pwhy }
        end
        local users, uwhy = users_answer(ctx, spec)
        if users == false then
          return { fixed = false, hop = spec, message = ("%s runs, but Dovecot does not find users through it yet"):format(spec), why = uwhy }
        end
        return { fixed = true, message = ("%s restarted: running since %s%s%s"):format(spec, tostring(now.started_at),
          addr and (", answers on %s:%d"):format(addr, port) or "", users and "; Dovecot finds users again" or "") }
      end,
    })
  end,
}
