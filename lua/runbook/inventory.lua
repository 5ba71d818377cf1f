-- runbook.inventory: loads and validates the inventory (YAML through libyaml).
--
--   inventory.load(path) -> inv | nil, "file:line:column: key: problem"
--   inventory.empty()    -> an inventory with defaults only (no hosts)
--   inventory.view(inv)  -> a deep copy safe to show a runbook (no internals, no secret fields)
--   inventory.secret(entry, what) -> value | nil, msg, code   (reads password_env / password_file)
--   inventory.secret_values(inv) -> every secret value the inventory names that can be read now
--   inventory.missing(inv, needs) -> what a runbook's `needs` names that the inventory lacks
--
-- Every key is checked against the schema below; unknown keys, wrong types, inline passwords,
-- user:password@ inside URLs and secret files that are not regular files of the running user
-- with mode 0600 (or stricter; symlinks refused) are refused, each error naming the place.
-- Durations ("10s", "5m", "1h", "2d" or a number of seconds) become seconds.
-- Depends on: runbook.yaml, runbook.exec (stat).
local M = {}

local DEFAULT_TIMEOUT, DEFAULT_CONNECT = 10, 5

-- Schema language: a table of key -> type, where type is a string ("string", "integer",
-- "boolean", "duration", "path", "strings", "bool_or_verify") or a nested table, or
-- {map = schema} for a name -> schema mapping, or {enum = {...}}.
local SERVICE = {
  container = "string", process = "boolean", kind = { enum = { "postfix", "dovecot", "mariadb", "other" } },
  compose = { project = "string", service = "string" },
  maildir_root = "string", config_dir = "string", queue_service = "string",
  log = { container = "boolean", file = "path", command = "strings" },
}
local HOST = {
  transport = { enum = { "local", "ssh" } },
  address = "string", port = "integer", user = "string", key = "path", known_hosts = "path",
  agent = "boolean", accept_new_hostkey = "boolean", passphrase_env = "string",
  docker = { socket = "path", sudo = "boolean", cli = "string" },
  services = { map = SERVICE },
}
local DATABASE = {
  host = "string", port = "integer", user = "string", database = "string",
  password_env = "string", password_file = "path", password = "forbidden",
  tls = "bool_or_verify", unix_socket = "path", service = "string",
}
local HTTP = {
  base_url = "string", token_env = "string", token_file = "path", token = "forbidden",
  timeout = "duration", verify = "boolean", cainfo = "path",
}
local ROOT = {
  defaults = { timeout = "duration", connect_timeout = "duration", deadline = "duration",
                memory_limit = "string" },   -- a size like 512M, checked by cli.lua
  audit = { journal = "path" },
  dns = { server = "string", port = "integer", timeout = "duration" },
  hosts = { map = HOST },
  databases = { map = DATABASE },
  http = { map = HTTP },
  mail = { mx_host = "string", mailserver_host = "string", hosted_domains = "strings",
           mx_addresses = "strings", relay_transport = "string", maildir_owner = "string",
           database = "string", usermgmt = "string", terraform_file = "path",
           disk_escalate_pct = "integer", probe_from = "string", probe_source = "string" },
}

-- A duration is positive, finite and at most a year (.inf, 1e999 and the like are refused).
local MAX_DURATION = 366 * 86400
local function parse_duration(v)
  if type(v) == "number" then return v > 0 and v <= MAX_DURATION and v or nil end
  if type(v) ~= "string" then return nil end
  local n, unit = v:match("^%s*(%d+%.?%d*)%s*([smhd]?)%s*$")
  if not n then return nil end
  local mult = ({ [""] = 1, s = 1, m = 60, h = 3600, d = 86400 })[unit]
  n = tonumber(n) * mult
  return n > 0 and n <= MAX_DURATION and n or nil
end
M.parse_duration = parse_duration

local Checker = {}
Checker.__index = Checker

function Checker:fail(tbl, key, path, msg)
  local yaml = require "runbook.yaml"
  local line, col = yaml.mark(tbl, key)
  local where = line and ("%s:%d:%d"):format(self.file, line, col) or self.file
  self.errors[#self.errors + 1] = ("%s: %s: %s"):format(where, path, msg)
end

function Checker:path(v)
  if v:sub(1, 2) == "~/" then return (os.getenv("HOME") or "") .. v:sub(2) end
  if v:sub(1, 1) ~= "/" then return self.dir .. "/" .. v end
  return v
end

function Checker:check(tbl, schema, prefix)
  if type(tbl) ~= "table" then return end
  for k, v in pairs(tbl) do
    local path = prefix == "" and tostring(k) or prefix .. "." .. tostring(k)
    local want = schema[k]
    if type(k) ~= "string" or want == nil then
      local known = {}
      for name in pairs(schema) do known[#known + 1] = name end
      table.sort(known)
      self:fail(tbl, k, path, "unknown key (expected one of: " .. table.concat(known, ", ") .. ")")
    elseif want == "forbidden" then
      self:fail(tbl, k, path, "inline secrets are refused: use " .. k .. "_env (an environment variable) or " ..
        k .. "_file (a file readable only by its owner)")
    elseif type(want) == "table" and want.map then
      if type(v) ~= "table" then self:fail(tbl, k, path, "expected a mapping of names")
      else
        for name, sub in pairs(v) do
          local p = path .. "." .. tostring(name)
          if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
            self:fail(v, name, p, "names may use letters, digits, '_', '.', '-'")
          elseif type(sub) ~= "table" then self:fail(v, name, p, "expected a mapping")
          else self:check(sub, want.map, p) end
        end
      end
    elseif type(want) == "table" and want.enum then
      local ok = false
      for _, e in ipairs(want.enum) do if v == e then ok = true end end
      if not ok then self:fail(tbl, k, path, "expected one of: " .. table.concat(want.enum, ", ")) end
    elseif type(want) == "table" then
      if type(v) ~= "table" then self:fail(tbl, k, path, "expected a mapping")
      else self:check(v, want, path) end
    elseif want == "string" then
      if type(v) ~= "string" or v == "" then self:fail(tbl, k, path, "expected a non-empty string") end
    elseif want == "path" then
      if type(v) ~= "string" or v == "" then self:fail(tbl, k, path, "expected a path")
      else tbl[k] = self:path(v) end
    elseif want == "integer" then
      if math.type(v) ~= "integer" or v < 0 or v > 65535 then self:fail(tbl, k, path, "expected an integer 0..65535") end
    elseif want == "boolean" then
      if type(v) ~= "boolean" then self:fail(tbl, k, path, "expected true or false") end
    elseif want == "bool_or_verify" then
      if type(v) ~= "boolean" and v ~= "verify" then self:fail(tbl, k, path, "expected true, false or verify") end
    elseif want == "duration" then
      local d = parse_duration(v)
      if not d then self:fail(tbl, k, path, "expected a duration like 10s, 5m, 1h") else tbl[k] = d end
    elseif want == "strings" then
      local ok = type(v) == "table"
      if ok then for i, s in pairs(v) do if math.type(i) ~= "integer" or type(s) ~= "string" then ok = false end end end
      if not ok then self:fail(tbl, k, path, "expected a list of strings") end
    end
  end
end

-- Rules that span keys.
function Checker:cross(inv)
  local exec = require "runbook.exec"
  for name, h in pairs(inv.hosts) do
    local p = "hosts." .. name
    if h.transport == nil then self:fail(h, nil, p, "missing key 'transport' (local or ssh)")
    elseif h.transport == "ssh" then
      for _, k in ipairs { "address", "user", "known_hosts" } do
        if h[k] == nil then self:fail(h, nil, p, ("ssh host needs '%s'"):format(k)) end
      end
      if h.key == nil and not h.agent then self:fail(h, nil, p, "ssh host needs 'key' or 'agent: true'") end
      h.port = h.port or 22
    end
    h.name = name
    h.services = h.services or {}
    for sname, s in pairs(h.services) do
      local n = (s.container and 1 or 0) + (s.compose and 1 or 0) + (s.process and 1 or 0)
      if n ~= 1 then
        self:fail(h.services, sname, p .. ".services." .. sname,
          "say where the service runs: exactly one of container, compose, process")
      end
      if s.compose and not (s.compose.project and s.compose.service) then
        self:fail(s, "compose", p .. ".services." .. sname .. ".compose", "needs project and service")
      end
      if (s.container or s.compose) and not (h.docker and h.docker.socket) and h.transport == "local" then
        h.docker = h.docker or {}
        h.docker.socket = h.docker.socket or "/var/run/docker.sock"
      end
      s.name, s.host = sname, name
    end
  end
  for name, db in pairs(inv.databases) do
    local p = "databases." .. name
    for _, k in ipairs { "user", "database" } do
      if db[k] == nil then self:fail(db, nil, p, ("missing key '%s'"):format(k)) end
    end
    if db.host == nil and db.unix_socket == nil then self:fail(db, nil, p, "needs 'host' or 'unix_socket'") end
    if db.password_env and db.password_file then
      self:fail(db, "password_file", p, "give password_env or password_file, not both")
    end
    if db.password_file then
      local ok, msg = exec.read_private(db.password_file, 4096)
      if not ok then self:fail(db, "password_file", p .. ".password_file", msg) end
    end
    db.port = db.port or 3306
    db.name = name
  end
  for name, e in pairs(inv.http) do
    if not e.base_url or not e.base_url:match("^https?://[^%s]+$") then
      self:fail(e, "base_url", "http." .. name .. ".base_url", "needs an http:// or https:// URL")
    elseif M.url_has_userinfo(e.base_url) then
      self:fail(e, "base_url", "http." .. name .. ".base_url",
        "user:password@ in a URL is refused (it would be printed with every request): use token_env or token_file")
    end
    if e.token_file then
      local ok, msg, code = exec.read_private(e.token_file, 4096)
      if not ok and code ~= "notfound" then
        self:fail(e, "token_file", "http." .. name .. ".token_file", msg)
      end
    end
    e.name = name
  end
  local mail = inv.mail
  for _, k in ipairs { "mx_host", "mailserver_host" } do
    if mail[k] and not inv.hosts[mail[k]] then
      self:fail(mail, k, "mail." .. k, ("names host '%s', which is not in hosts"):format(mail[k]))
    end
  end
end

local function fill_defaults(inv)
  inv.defaults = inv.defaults or {}
  inv.defaults.timeout = inv.defaults.timeout or DEFAULT_TIMEOUT
  inv.defaults.connect_timeout = inv.defaults.connect_timeout or DEFAULT_CONNECT
  inv.hosts = inv.hosts or {}
  inv.databases = inv.databases or {}
  inv.http = inv.http or {}
  inv.mail = inv.mail or {}
  inv.dns = inv.dns or {}
  inv.audit = inv.audit or {}
  return inv
end

function M.empty() return fill_defaults {} end

-- validate(doc, file) -> inv | nil, message (all errors, one per line)
function M.validate(doc, file)
  local dir = file and file:match("^(.*)/[^/]*$") or "."
  local c = setmetatable({ errors = {}, file = file or "(inventory)", dir = dir }, Checker)
  if type(doc) ~= "table" then return nil, c.file .. ": the inventory must be a YAML mapping" end
  c:check(doc, ROOT, "")
  if #c.errors == 0 then
    fill_defaults(doc)
    c:cross(doc)
  end
  if #c.errors > 0 then return nil, table.concat(c.errors, "\n") end
  doc.path = file
  return doc
end

function M.load(path)
  local exec = require "runbook.exec"
  local yaml = require "runbook.yaml"
  if type(path) ~= "string" or path == "" then return nil, "no inventory given (--inventory FILE)" end
  local text, msg = exec.readfile(path, 1024 * 1024)
  if not text then return nil, "inventory " .. msg end
  local doc, err = yaml.load(text, path)
  if doc == nil then return nil, err end
  local abs = require("runbook.core").realpath(path) or path
  local inv, verr = M.validate(doc, abs)
  if not inv then return nil, verr end
  local _, short = M.secret_values(inv)     -- a secret too short to mask: nothing runs
  if short then return nil, abs .. ": " .. short end
  return inv
end

-- url_has_userinfo(url) -> true when the authority part carries "user[:password]@".
function M.url_has_userinfo(url)
  local authority = tostring(url):match("^%a[%w+.-]*://([^/?#]*)")
  return authority ~= nil and authority:find("@", 1, true) ~= nil
end

local SECRET_MIN = 3   -- as runbook.context.SECRET_MIN: shorter ones could not be masked

-- secret(entry, "password" | "token" | "passphrase") -> value | nil, msg, code. Never logs the
-- value. A file must be a regular file (not a symlink) of the running user, mode 0600 or
-- stricter (runbook.exec.read_private checks the opened descriptor; a FIFO cannot block).
function M.secret(entry, what)
  local env, file = entry[what .. "_env"], entry[what .. "_file"]
  local v
  if env then
    v = os.getenv(env)
    if v == nil or v == "" then
      return nil, ("%s: environment variable %s is not set"):format(entry.name or what, env), "auth"
    end
  elseif file then
    local exec = require "runbook.exec"
    local text, msg, code = exec.read_private(file, 4096)
    if not text then return nil, msg, code end
    v = text:gsub("[\r\n]+$", "")
  else
    return nil
  end
  if #v < SECRET_MIN then
    return nil, ("%s: the %s is shorter than %d bytes: refused (it could not be masked in the output)"):format(
      entry.name or what, what, SECRET_MIN), "short"
  end
  return v
end

-- secret_values(inv) -> list of every secret the inventory names that can be read now, so the
-- run masks them from its first line on; second value: the first "too short" error, if any.
function M.secret_values(inv)
  local out, short = {}, nil
  local function add(entry, what)
    if entry[what .. "_env"] or entry[what .. "_file"] then
      local v, msg, code = M.secret(entry, what)
      if v then out[#out + 1] = v elseif code == "short" then short = short or msg end
    end
  end
  for _, db in pairs(inv.databases or {}) do add(db, "password") end
  for _, e in pairs(inv.http or {}) do add(e, "token") end
  for _, h in pairs(inv.hosts or {}) do add(h, "passphrase") end
  return out, short
end

-- Keys a runbook never sees: where the secrets are (variables, files, keys).
local SECRET_KEYS = { password_env = true, password_file = true, token_env = true, token_file = true,
                      passphrase_env = true, key = true }

local function copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do
    if type(k) ~= "string" or (k:sub(1, 1) ~= "_" and not SECRET_KEYS[k]) then out[k] = copy(x, seen) end
  end
  return out
end

function M.view(inv) return copy(inv) end

-- ---------------------------------------------------------------- what a runbook needs
-- A runbook declares what it needs (sandbox.lua checks the shape at load); cli.lua asks
-- missing() after the arguments are bound and before anything runs. A name is an inventory
-- name, or a role "@ROLE" that a mail.* key resolves:
M.ROLES = {
  hosts = { mx = { key = "mx_host", what = "the MX host" },
            mailserver = { key = "mailserver_host", what = "the mail server host" } },
  sql = { database = { key = "database", default = "mail", what = "the mail database" } },
  http = { usermgmt = { key = "usermgmt", default = "usermgmt", what = "the User Management API" } },
}
M.NEEDS = { hosts = "hosts", services = "hosts", sql = "sql", http = "http" }   -- kind -> roles

-- resolve(inv, kind, name) -> inventory name | nil, "(mail.KEY is not set)"
local function resolve(inv, kind, name)
  local role = name:match("^@([%w_]+)$")
  if not role then return name end
  local r = M.ROLES[kind][role]
  local v = inv.mail[r.key] or r.default
  if v == nil then return nil, r end
  return v, r
end

-- missing(inv, needs) -> list of what the inventory lacks, one line each naming the key to add
-- (empty when nothing is missing). needs: { hosts = {...}, services = {"@mx/postfix"},
-- sql = {...}, http = {...} } as sandbox.lua normalised it.
function M.missing(inv, needs)
  local out, bad_host = {}, {}
  for _, h in ipairs(needs.hosts or {}) do
    local name, r = resolve(inv, "hosts", h)
    if not name then
      out[#out + 1] = ("%s (mail.%s is not set): set mail.%s to one of hosts"):format(r.what, r.key, r.key)
      bad_host[h] = true
    elseif not inv.hosts[name] then
      out[#out + 1] = ("host '%s'%s: add hosts.%s"):format(name, r and (" (" .. r.what .. ", mail." .. r.key .. ")") or "", name)
      bad_host[h] = true
    end
  end
  for _, spec in ipairs(needs.services or {}) do
    local h, svc = spec:match("^(.-)/(.*)$")
    local name = resolve(inv, "hosts", h)
    if not bad_host[h] and name and inv.hosts[name] then
      local services = inv.hosts[name].services or {}
      if not services[svc] then
        out[#out + 1] = ("service %s/%s: add hosts.%s.services.%s"):format(name, svc, name, svc)
      end
    end
  end
  for _, kind in ipairs { "sql", "http" } do
    local section = kind == "sql" and "databases" or "http"
    for _, n in ipairs(needs[kind] or {}) do
      local name, r = resolve(inv, kind, n)
      if not inv[section][name] then
        out[#out + 1] = ("%s '%s'%s: add %s.%s"):format(kind == "sql" and "the SQL database" or "the HTTP endpoint",
          name, r and (" (" .. r.what .. ", mail." .. r.key .. (r.default and (", default " .. r.default) or "") .. ")") or "",
          section, name)
      end
    end
  end
  return out
end

return M
