-- runbooks/postfix-param-set.lua: issue 11's generic Postfix remedy: set one main.cf parameter
-- of one Postfix hop (postconf -e, postfix reload) with its value before and after, after asking
-- that Postfix itself whether the parameter exists (postconf -d NAME: never a hand-made list).
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

return {
  description = "Set one main.cf parameter of a Postfix hop (postconf -e, reload), refusing names that Postfix does not know",
  kind = "remedy",
  help = [[
What it does: asks the Postfix of --service (HOST/SERVICE from the inventory, e.g. ec2/postfix
for the MX or dell/postfix for the mail server) whether --name is one of its parameters
(`postconf -d NAME` prints its default; a name Postfix does not know is refused: nothing is
changed, exit 1), then reads the current value (`postconf NAME`). Equal to --value already:
nothing to do (exit 0).
What it changes: NAME = VALUE in that Postfix's main.cf through `postconf -e`, then `postfix
reload`. Without --apply it only prints `NAME: old -> new` (and Postfix's default) and the
command. A value with quotes, a backslash, `$(`, backquotes, ; & | < > or a newline is refused
before anything runs (exit 2); Postfix's own $name references are allowed. On the MX the run
also prints the Terraform change that makes it permanent (postconf -e there is temporary).
How to verify: after --apply it re-reads NAME and expects VALUE; then send a test message
(undelivered --probe --apply) or read the hop's log. Typical uses for issue 11's findings:
message_size_limit of the MX no larger than the mail server's, the same recipient_delimiter
on both hops as Dovecot's, a domain removed from one of two address classes.]],
  args = {
    { name = "service", type = "service", required = true,
      help = "the Postfix as HOST/SERVICE, e.g. ec2/postfix (the MX) or dell/postfix (the mail server)" },
    { name = "name", type = "string", required = true, pattern = "^%a[%w_]*$",
      help = "the main.cf parameter, e.g. message_size_limit (Postfix itself says whether it exists)" },
    { name = "value", type = "string", required = true,
      help = "the new value, one line, e.g. 10240000; no quotes, $(...), ; & | < > or backslashes" },
  },
  hosts = {},                 -- whichever host --service names
  examples = {
    "runbook run postfix-param-set --service ec2/postfix --name message_size_limit --value 10240000",
    "runbook run postfix-param-set --service dell/postfix --name recipient_delimiter --value + --apply",
    "runbook run postfix-param-set --service ec2/postfix --name smtp_tls_security_level --value may --apply --yes",
  },

  run = function(ctx)
    local svc, name = ctx.args.service, ctx.args.name
    local value = ctx.args.value
    remedy.refuse_hostile(ctx, "value", value)
    value = value:gsub("^%s+", ""):gsub("%s+$", "")     -- postconf -e keeps no outer blanks either
    local spec = ops.service_of(ctx, svc)
    if (spec.kind or svc:match("/(.*)$")) ~= "postfix" then
      ctx:usage_error(("--service %s is not a Postfix service (kind %s)"):format(svc, tostring(spec.kind)))
    end
    local host = svc:match("^(.-)/")
    local function postconf_argv(...)
      local argv = { "postconf" }
      if spec.config_dir then argv[2] = "-c"; argv[3] = spec.config_dir end
      for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
      return argv
    end

    local state = ctx:step("check", function()
      -- does this Postfix know the parameter? `postconf -d NAME` prints "NAME = default" for a
      -- parameter it knows and only a warning ("unknown parameter") for one it does not
      local r, msg, code = ctx:service_exec(svc, postconf_argv("-d", name))
      r = ops.must(r, msg, code, "postconf -d " .. name .. " on " .. svc)
      local default = r.stdout:match("^" .. name .. " =%s?([^\n]*)")
      if r.status ~= 0 or not default then
        return { unknown = true, why = ((r.stderr or ""):gsub("%s+$", "")) }
      end
      ctx:note(("%s default: %s"):format(name, default == "" and "(empty)" or default))
      local cur, err = ctx:postconf(svc, name)
      if cur == nil then error(("postconf %s on %s: %s"):format(name, svc, tostring(err)), 0) end
      ctx:note(("%s = %s"):format(name, cur))
      return { value = cur, default = default }
    end, "does this Postfix know the parameter (postconf -d), and what is it now (postconf)?")
    if not state then return end
    if state.unknown then
      ctx:verdict { status = "problem", cause = "unknown_parameter",
                    message = ("%s does not know a parameter %s: nothing changed (check the name with postconf -d on that host)"):format(svc, name),
                    evidence = { { host = host, source = "postconf -d " .. name,
                                   text = state.why ~= "" and state.why or "no value printed" } } }
      return
    end
    local evidence = { { host = host, source = "postconf", text = ("%s = %s"):format(name, state.value) } }
    if state.value == value then
      return remedy.nothing_to_do(ctx, ("%s of %s is %s already: nothing to do"):format(name, svc,
        value == "" and "(empty)" or value), evidence)
    end

    local function shown(v) return v == "" and "(empty)" or v end
    return remedy.change(ctx, {
      step = "set", title = "postconf -e NAME, postfix reload",
      finding = { severity = "warn", cause = "param_differs", hop = svc, evidence = evidence,
                  message = ("%s of %s is %s, not %s"):format(name, svc, shown(state.value), shown(value)) },
      change = ("%s: %s -> %s"):format(name, shown(state.value), shown(value)),
      write = function() return ctx:postconf_set(svc, name, value) end,
      what = name .. " of " .. svc,
      after_write = function()
        if svc == ops.mx_postfix(ctx) then ops.terraform_note(ctx, name, state.value, value) end
      end,
      dry = { cause = "param_differs", message = ("%s of %s is %s, not %s"):format(name, svc, shown(state.value), shown(value)) },
      verify_title = "re-read the parameter",
      verify = function()
        local cur = ctx:postconf(svc, name)
        if cur ~= value then
          return { fixed = false, hop = svc, message = ("%s of %s is not %s after postconf -e"):format(name, svc, shown(value)),
                   why = ("%s of %s reads back as %s"):format(name, svc, tostring(cur)) }
        end
        return { fixed = true, message = ("%s of %s: %s -> %s (reloaded)"):format(name, svc, shown(state.value), shown(value)),
                 evidence = { { host = host, source = "postconf", text = ("%s = %s"):format(name, cur) } } }
      end,
    })
  end,
}
