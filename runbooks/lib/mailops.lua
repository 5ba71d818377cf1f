-- runbooks/lib/mailops.lua: small helpers shared by the mail runbooks (remedies and reports).
--
-- Everything here is pure Lua over the ctx a runbook gets: inventory names with the document's
-- defaults, Postfix list handling, and the one way remedies treat the result of a gated write.
-- Runbooks use it with `local ops = require "lib.mailops"`.
-- Depends on: nothing but the ctx passed in.
local M = {}

-- A "--service HOST/SERVICE" argument: plain names only, so nothing hostile gets through.
M.SERVICE_PATTERN = "^[%w_.-]+/[%w_.-]+$"

-- ---------------------------------------------------------------- inventory names

function M.mx(ctx) return ctx.inventory.mail.mx_host or "ec2" end
function M.ms(ctx) return ctx.inventory.mail.mailserver_host or "dell" end
function M.mx_postfix(ctx) return M.mx(ctx) .. "/postfix" end
function M.ms_postfix(ctx) return M.ms(ctx) .. "/postfix" end
function M.dovecot(ctx) return M.ms(ctx) .. "/dovecot" end
function M.db(ctx) return ctx.inventory.mail.database or "mail" end
function M.usermgmt(ctx) return ctx.inventory.mail.usermgmt or "usermgmt" end
function M.maildir_owner(ctx) return ctx.inventory.mail.maildir_owner or "vmail" end

-- service_of(ctx, "host/svc") -> the inventory's service table or nil
function M.service_of(ctx, spec)
  local h, s = tostring(spec):match("^(.-)/(.*)$")
  local host = h and ctx.inventory.hosts[h]
  return host and host.services and host.services[s] or nil
end

-- need_service(ctx, spec): a service named on the command line must be in the inventory.
-- A service the inventory lacks is a usage error: exit 2 when nothing has run yet (the remedies
-- call this first), a runtime error once something has.
function M.need_service(ctx, spec)
  if not M.service_of(ctx, spec) then
    ctx:usage_error(("service %s is not in the inventory (add hosts.%s.services.%s)"):format(spec,
      tostring(spec:match("^(.-)/")), tostring(spec:match("/(.*)$"))))
  end
  return spec
end

function M.maildir_root(ctx)
  local dc = M.service_of(ctx, M.dovecot(ctx)) or {}
  return (dc.maildir_root or "/var/mail/vmail"):gsub("/+$", "")
end

-- postfix_services(ctx) -> {"ec2/postfix", "dell/postfix"} (those in the inventory)
function M.postfix_services(ctx)
  local out = {}
  for _, spec in ipairs { M.mx_postfix(ctx), M.ms_postfix(ctx) } do
    if M.service_of(ctx, spec) then out[#out + 1] = spec end
  end
  return out
end

-- service_port(ctx, "host/svc") -> address, port, what | nil: where the service should answer,
-- from the inventory: Postfix on the host's address :25 (the MX's mail.mx_addresses first),
-- Dovecot on mail.relay_transport's LMTP next hop, MariaDB on the mail database's host:port.
function M.service_port(ctx, spec)
  local svc = M.service_of(ctx, spec)
  if not svc then return nil end
  local hname = spec:match("^(.-)/")
  local host = ctx.inventory.hosts[hname] or {}
  local inv = ctx.inventory
  local kind = svc.kind or spec:match("/(.*)$")
  if kind == "postfix" then
    local addr = hname == M.mx(ctx) and inv.mail.mx_addresses and inv.mail.mx_addresses[1] or host.address
    if addr then return addr, 25, "smtp" end
  elseif kind == "dovecot" then
    local k, a, p = M.parse_transport(inv.mail.relay_transport)
    if k == "lmtp" then return a, p, "lmtp" end
  elseif kind == "mariadb" then
    local db = inv.databases and inv.databases[M.db(ctx)]
    if db and db.host then return db.host, db.port or 3306, "mysql" end
  end
  return nil
end

-- ---------------------------------------------------------------- Postfix values

-- postconf_value(p, name) -> string: tolerant of the wrapper returning a string or {value=}.
function M.postconf_value(p, name)
  local v = p and p[name]
  if type(v) == "table" then v = v.value or table.concat(v, ", ") end
  return v ~= nil and tostring(v) or ""
end

-- split_list("a.test, b.test c.test") -> {"a.test", "b.test", "c.test"} (Postfix separators)
function M.split_list(s)
  local out = {}
  for item in tostring(s or ""):gmatch("[^%s,]+") do out[#out + 1] = item end
  return out
end

function M.contains(list, item)
  item = item:lower()
  for _, v in ipairs(list) do if v:lower() == item then return true end end
  return false
end

-- list_append(value, item) -> new value with item appended in the list's own separator style
-- (", " / "," / " "); an empty list becomes just the item.
function M.list_append(value, item)
  local v = tostring(value or ""):gsub("%s+$", "")
  if v:match("^%s*$") then return item end
  local sep = v:match("%S(%s*,%s*)%S") or (v:match("%S(%s+)%S") and " ") or ", "
  return v .. sep .. item
end

-- parse_transport("lmtp:[127.0.0.20]:2525") -> kind, host, port | nil, why
function M.parse_transport(v)
  v = tostring(v or "")
  local kind, rest = v:match("^(%a+):(.+)$")
  if kind ~= "lmtp" and kind ~= "smtp" then return nil, "the transport must be lmtp: or smtp:" end
  local host, port = rest:match("^%[([%w.:-]+)%]:(%d+)$")
  if not host then host, port = rest:match("^([%w][%w.-]*):(%d+)$") end
  if not host then
    return nil, "the next hop must be [address]:port or host:port, e.g. lmtp:[127.0.0.20]:2525"
  end
  port = tonumber(port)
  if port < 1 or port > 65535 then return nil, "port out of range 1..65535" end
  return kind, host, port
end

-- terraform_note(ctx, name, old, new): the permanent fix. `postconf -e` on the MX is lost when
-- Terraform rebuilds it (the document keeps ec2's configuration in
-- services/mailserver/terraform/main.tf), so print the change to make there: a diff against
-- the real file when mail.terraform_file is readable here, else a generic snippet.
function M.terraform_note(ctx, name, old, new)
  local path = ctx.inventory.mail.terraform_file
  local shown = path or "services/mailserver/terraform/main.tf"
  local lines = {}
  if path then
    local text = ctx:read_file(path)
    if text then
      local n = 0
      for line in (text .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        if line:find(name, 1, true) and (old == "" or line:find(old, 1, true)) then
          local a, b = line:find(old, 1, true)
          local changed = old ~= "" and (line:sub(1, a - 1) .. new .. line:sub(b + 1)) or nil
          lines[#lines + 1] = ("%s:%d"):format(path, n)
          lines[#lines + 1] = "- " .. line
          lines[#lines + 1] = "+ " .. (changed or ("%s  # set %s = %s"):format(line, name, new))
        end
      end
      if #lines == 0 then lines[1] = ("(%s does not mention %s = %s: add the setting where the container's main.cf is built)"):format(path, name, old) end
    end
  end
  if #lines == 0 then
    lines = {
      ("in %s, where the mailserver-postfix container's Postfix settings are defined:"):format(shown),
      ("-   %s = %s"):format(name, old),
      ("+   %s = %s"):format(name, new),
    }
  end
  ctx:note(("permanent fix (the postconf change is temporary: Terraform owns ec2's configuration); suggested change:\n  %s\n  then: terraform plan && terraform apply"):format(table.concat(lines, "\n  ")))
end

-- ---------------------------------------------------------------- remedies

-- written(ctx, res, msg, code, what) -> "applied" | "dryrun". The one way a remedy treats the
-- result of a gated write: a dry run says what would happen, a declined confirmation ends the
-- run with a problem verdict, any other failure raises (the step shows the error).
function M.written(ctx, res, msg, code, what)
  if res ~= nil then return "applied" end
  if code == "dryrun" then
    ctx:note(("dry run: %s was not changed; rerun with --apply to change it"):format(what))
    return "dryrun"
  end
  if code == "declined" then
    ctx:verdict { status = "problem", cause = "declined", message = ("nothing changed: %s declined"):format(what) }
    return "declined"
  end
  error(("%s failed: %s (%s)"):format(what, tostring(msg), tostring(code)), 0)
end

-- must(v, msg, code, what) -> v, or raises for a read that failed
function M.must(v, msg, code, what)
  if v == nil then error(("%s: %s (%s)"):format(what, tostring(msg), tostring(code)), 0) end
  return v
end

-- pause(ctx, seconds): wait a little (a daemon coming up, a queue run, the next log poll).
-- Uses ctx:sleep when the engine offers it, else `sleep N` on the local machine as a read.
function M.pause(ctx, seconds)
  if ctx.sleep then return ctx:sleep(seconds) end
  return ctx:exec("local", { "sleep", tostring(seconds) }, { read_only = true })
end

-- dial(ctx, from, addr, port) -> ok, msg, code, from_used: a TCP connect to addr:port dialled
-- from inventory host `from`. When that host's sshd refuses TCP forwarding (code denied) it
-- dials from this machine instead and says so in a note: a different vantage point.
function M.dial(ctx, from, addr, port)
  local r, msg, code = ctx:tcp_check(from, addr, port)
  if not r and code == "denied" then
    ctx:note(("%s's sshd refuses TCP forwarding (%s): dialling from this machine instead"):format(from, tostring(msg)))
    from = "local"
    r, msg, code = ctx:tcp_check(from, addr, port)
  end
  return r ~= nil, msg, code, from
end

-- shell_quote(s): for commands shown to a person (notes), never executed by us.
function M.shell_quote(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- fmt_age(seconds) -> "3h 02m", "45s"
function M.fmt_age(s)
  s = math.floor(tonumber(s) or 0)
  if s < 0 then s = 0 end
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm %02ds"):format(s // 60, s % 60) end
  if s < 86400 then return ("%dh %02dm"):format(s // 3600, (s % 3600) // 60) end
  return ("%dd %02dh"):format(s // 86400, (s % 86400) // 3600)
end

function M.utc(t)
  if not t then return "?" end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- log_line(rec) -> the text to feed a maillog tracker: docker's own timestamp in front.
function M.log_line(rec)
  return rec.ts and (rec.ts .. " " .. rec.line) or rec.line
end

return M
