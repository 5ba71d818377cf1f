-- runbooks/container-restart.lua: the cheat sheet's "Dovecot LMTP down" remedy
-- (`docker compose restart dovecot`), and the same for the MX's Postfix container or any
-- other container service of the inventory.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

local WAIT_PORT = 20   -- seconds to wait for the daemon to answer after the restart

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
container is started by it. Without --apply it only shows the command and the current state.
How to verify: after --apply it waits until the container runs again and the port answers
(up to 20 s), then reports the new state; mail that waited in a queue goes out at the next
retry, or flush it with queue-flush.]],
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

    return remedy.change(ctx, {
      step = "restart", title = "docker restart (document: docker compose restart dovecot)",
      finding = why and { severity = "warn", cause = "service_down", hop = spec, message = ("%s: %s"):format(spec, why) } or nil,
      change = ("%s: %s -> running (restarted)"):format(spec, st.running and "running" or tostring(st.status)),
      write = function() return ctx:container_restart(spec) end,
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
        if addr then
          local t0 = ctx:elapsed()
          local ok, pmsg
          repeat
            ok, pmsg = answers()
            if not ok then
              ctx:progress(("waiting for %s:%d"):format(addr, port))
              ops.pause(ctx, 1)
            end
          until ok or ctx:elapsed() - t0 > WAIT_PORT
          if not ok then
            return { fixed = false, hop = spec, message = ("%s does not answer after the restart"):format(spec),
                     why = ("%s runs but does not answer on %s:%d after %ds: %s"):format(spec, addr, port, WAIT_PORT, tostring(pmsg)) }
          end
        end
        return { fixed = true, message = ("%s restarted: running since %s%s"):format(spec, tostring(now.started_at),
          addr and (", answers on %s:%d"):format(addr, port) or "") }
      end,
    })
  end,
}
