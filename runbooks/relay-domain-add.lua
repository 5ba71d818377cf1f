-- runbooks/relay-domain-add.lua: the cheat sheet's "domain missing from ec2 relay_domains"
-- remedy: postconf -e "relay_domains = <current>, <domain>" on the MX, plus the Terraform change
-- that makes it permanent.
local ops = require "lib.mailops"
local remedy = require "lib.remedy"

return {
  description = "Add a domain to relay_domains of the MX's Postfix (postconf -e, reload) and show the Terraform fix",
  kind = "remedy",
  help = [[
What it does: reads relay_domains of the MX's Postfix (inventory mail.mx_host + "/postfix"
unless --service). When the domain is listed, nothing is done (exit 0). Otherwise the MX
refuses mail for it with "554 5.7.1 Relay access denied" (document 2.3, 2.4).
What it changes: relay_domains = <current list>, <domain> through `postconf -e`, keeping the
current entries and their separators, then `postfix reload` in the container. Without --apply it
only prints `relay_domains: old -> new` and the command.
The document marks `postconf -e` as temporary: ec2's configuration lives in Terraform
(services/mailserver/terraform/main.tf). The run prints the change to make there (a diff against
inventory mail.terraform_file when that file is readable here).
How to verify: after --apply it re-reads relay_domains and expects the domain in it; then
`runbook run undelivered --addr someone@DOMAIN` or an SMTP RCPT probe is accepted.]],
  args = {
    { name = "domain", type = "domain", required = true, help = "the hosted domain the MX must relay, e.g. example.jp" },
    { name = "service", type = "string", pattern = ops.SERVICE_PATTERN,
      help = "the MX's Postfix as HOST/SERVICE (default: inventory mail.mx_host + /postfix)" },
  },
  hosts = { "@mx" },          -- the MX gateway (mail.mx_host)
  examples = {
    "runbook run relay-domain-add --domain example.jp",
    "runbook run relay-domain-add --domain example.jp --apply",
    "runbook run relay-domain-add --domain example.jp --service ec2/postfix --apply --yes",
  },

  run = function(ctx)
    local domain = ctx.args.domain
    local svc = ops.need_service(ctx, ctx.args.service or ops.mx_postfix(ctx))

    local state = ctx:step("check", function()
      local value, list = ctx:postconf(svc, "relay_domains")
      if value == nil then error(("postconf relay_domains on %s: %s"):format(svc, tostring(list)), 0) end
      ctx:note(("relay_domains = %s"):format(value))
      for _, item in ipairs(list) do
        if item:find("[:$]") then
          ctx:note(("relay_domains also uses %s: a domain listed there is not seen here"):format(item))
        end
      end
      return { value = value, list = list }
    end, "relay_domains of the MX (document 2.3: postconf relay_domains)")
    if not state then return end
    local host = svc:match("^(.-)/")
    if ops.contains(state.list, domain) then
      return remedy.nothing_to_do(ctx, ("%s is in relay_domains of %s: nothing to do"):format(domain, svc),
        { { host = host, source = "postconf", text = "relay_domains = " .. state.value } })
    end

    local new = ops.list_append(state.value, domain)
    return remedy.change(ctx, {
      step = "add", title = "postconf -e relay_domains, postfix reload",
      finding = { severity = "warn", cause = "relay_domain_missing", hop = svc,
                  message = ("%s is not in relay_domains of %s: its mail is refused with 554 Relay access denied"):format(domain, svc),
                  evidence = { { host = host, source = "postconf", text = "relay_domains = " .. state.value } } },
      change = ("relay_domains: %s -> %s"):format(state.value, new),
      write = function() return ctx:postconf_set(svc, "relay_domains", new) end,
      what = "relay_domains of " .. svc,
      after_write = function() ops.terraform_note(ctx, "relay_domains", state.value, new) end,
      dry = { cause = "relay_domain_missing", message = ("%s is missing from relay_domains of %s"):format(domain, svc) },
      verify_title = "re-read relay_domains",
      verify = function()
        local value, list = ctx:postconf(svc, "relay_domains")
        if value == nil or not ops.contains(list, domain) then
          return { fixed = false, hop = svc, why = ("relay_domains of %s reads back as %s"):format(svc, tostring(value)),
                   message = ("%s still not in relay_domains"):format(domain) }
        end
        return { fixed = true, message = ("%s added to relay_domains of %s (reloaded); make it permanent in Terraform"):format(domain, svc),
                 evidence = { { host = host, source = "postconf", text = "relay_domains = " .. value } } }
      end,
    })
  end,
}
