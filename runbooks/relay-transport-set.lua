-- runbooks/relay-transport-set.lua: the cheat sheet's "relay_transport unset or wrong" remedy:
-- postconf -e "relay_transport = lmtp:[<dell>]:2525" on the MX, then check the next hop answers.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

return {
  description = "Set relay_transport of the MX's Postfix (postconf -e, reload) and check the next hop answers",
  kind = "remedy",
  help = [[
What it does: reads relay_transport of the MX's Postfix (inventory mail.mx_host + "/postfix"
unless --service) and compares it with --value (default: inventory mail.relay_transport, e.g.
lmtp:[100.110.222.53]:2525). With relay_transport set, every relay_domains domain goes to that
next hop (document 2.3); unset or wrong, mail for the hosted domains is deferred or misrouted.
The value must be lmtp: or smtp: with a bracketed address or a host name, and a port.
Equal already: nothing to change (exit 0; the next hop is still checked).
What it changes: relay_transport through `postconf -e`, then `postfix reload`. Without --apply
it only prints `relay_transport: old -> new` and the command. The run also prints the
Terraform change that makes it permanent.
How to verify: after --apply it re-reads relay_transport and dials the next hop from the MX
host (TCP connect): a next hop that does not answer is a finding (the tailnet, or the mail
server's Dovecot / Postfix: see container-restart).]],
  args = {
    { name = "value", type = "string", pattern = "^[ls]mtp:%[?[%w][%w.:-]*%]?:%d+$",
      help = "the next hop, e.g. lmtp:[127.0.0.20]:2525 (default: inventory mail.relay_transport)" },
    { name = "service", type = "string", pattern = ops.SERVICE_PATTERN,
      help = "the MX's Postfix as HOST/SERVICE (default: inventory mail.mx_host + /postfix)" },
  },
  hosts = { "@mx" },          -- the MX gateway (mail.mx_host)
  examples = {
    "runbook run relay-transport-set",
    "runbook run relay-transport-set --value 'lmtp:[100.110.222.53]:2525' --apply",
  },

  run = function(ctx)
    local svc = ops.need_service(ctx, ctx.args.service or ops.mx_postfix(ctx))
    local mxhost = svc:match("^(.-)/")
    local value = ctx.args.value or ctx.inventory.mail.relay_transport
    if not value then
      ctx:verdict { status = "problem", cause = "usage",
                    message = "no value: give --value lmtp:[ADDRESS]:PORT or set mail.relay_transport in the inventory" }
      return
    end
    local kind, nh_host, nh_port = ops.parse_transport(value)
    if not kind then
      ctx:verdict { status = "problem", cause = "usage", message = ("%q is not a relay transport: %s"):format(value, nh_host) }
      return
    end

    local function next_hop(final)
      local r, msg, code, from = ops.dial(ctx, mxhost, nh_host, nh_port)
      if r then
        ctx:note(("next hop %s:%d answers from %s (%s)"):format(nh_host, nh_port, from, kind))
        return true
      end
      ctx:finding { severity = final and "fail" or "warn", cause = "relay_unreachable", hop = mxhost .. "->" .. nh_host,
                    message = ("the next hop %s:%d does not answer from %s: %s (%s)"):format(nh_host, nh_port, from, tostring(msg), tostring(code)) }
      return false
    end

    local state = ctx:step("check", function()
      local cur, err = ctx:postconf(svc, "relay_transport")
      if cur == nil then error(("postconf relay_transport on %s: %s"):format(svc, tostring(err)), 0) end
      ctx:note(("relay_transport = %s"):format(cur))
      return { value = cur }
    end, "relay_transport of the MX (document 2.3: postconf relay_transport)")
    if not state then return end
    local function norm(v) return (tostring(v):gsub("%s+", "")) end
    if norm(state.value) == norm(value) then
      local ok = ctx:step("next-hop", function() return next_hop(false) end, "does the next hop answer from the MX?")
      ctx:verdict { status = ok and "healthy" or "problem", cause = not ok and "relay_unreachable" or nil,
                    message = ("relay_transport of %s is %s already: nothing to change%s"):format(svc, value,
                      ok and "" or ("; but %s:%d does not answer"):format(nh_host, nh_port)) }
      return
    end

    return remedy.change(ctx, {
      step = "set", title = "postconf -e relay_transport, postfix reload",
      finding = { severity = "warn", cause = "relay_transport_wrong", hop = svc,
                  message = ("relay_transport of %s is %q, not %s"):format(svc, state.value, value),
                  evidence = { { host = mxhost, source = "postconf", text = "relay_transport = " .. state.value } } },
      change = ("relay_transport: %s -> %s"):format(state.value == "" and "(unset)" or state.value, value),
      write = function() return ctx:postconf_set(svc, "relay_transport", value) end,
      what = "relay_transport of " .. svc,
      after_write = function() ops.terraform_note(ctx, "relay_transport", state.value, value) end,
      dry = { cause = "relay_transport_wrong", message = ("relay_transport of %s is %q, not %s"):format(svc, state.value, value) },
      verify_title = "re-read relay_transport and dial the next hop from the MX",
      verify = function()
        local cur = ctx:postconf(svc, "relay_transport")
        if cur == nil or norm(cur) ~= norm(value) then
          return { fixed = false, hop = svc, why = ("relay_transport reads back as %s"):format(tostring(cur)),
                   message = "relay_transport not set" }
        end
        if not next_hop(true) then      -- next_hop stated the failing finding
          return { fixed = false, finding = false, cause = "relay_unreachable",
                   message = ("relay_transport is %s now, but %s:%d does not answer from %s"):format(value, nh_host, nh_port, mxhost) }
        end
        return { fixed = true, message = ("relay_transport of %s is %s (reloaded) and the next hop answers; make it permanent in Terraform"):format(svc, value) }
      end,
    })
  end,
}
