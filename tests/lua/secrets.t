-- secrets.t: no secret is ever printed, and runbooks never see the inventory's secrets (issue 9,
-- "Secrets"). One block per defect found by the security review (reproducers named in each
-- heading), each failing on the code before the fix and each with a control: the same check must
-- find a form nobody masks (the reversed secret), so a check that cannot fail shows up.
-- Nothing leaves this machine: the database and the API are closed ports on 127.0.0.1.
local t = require "tap"
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"
local context = require "runbook.context"

local RB = os.getenv("RUNBOOK")
local ROOT = os.getenv("RUNBOOK_ROOT")
local SEC = ROOT .. "/tests/fixtures/security"
local TMP = "/tmp/runbook-secrets-test-" .. core.getpid()
exec.run({ "rm", "-rf", TMP })
exec.run({ "mkdir", "-p", TMP })

local PW = "Pa\"ss\\w'rd$(x)"              -- the review's password: every escaping matters
local function base_env(extra)
  local e = { RUNBOOK_PATH = SEC, NO_COLOR = "1", RUNBOOK_INVENTORY = "", RB_DB_PW = PW }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end
local run = require("rbrun").runner { timeout = 30 }
local function rb(args, opts)
  opts = opts or {}
  return run(args, { timeout = opts.timeout, env = base_env(opts.env) })
end
local function contains(s, x) return type(s) == "string" and s:find(x, 1, true) ~= nil end
local function write(p, s, mode) assert(exec.writefile(p, s, mode or tonumber("600", 8))) end
local function inventory(name, body)
  local p = TMP .. "/" .. name .. ".yaml"
  write(p, "defaults: { timeout: 3s, connect_timeout: 2s }\n" .. body)
  return p
end

local journal = TMP .. "/audit.jsonl"
local inv = inventory("sec", ([[
audit: { journal: %s }
hosts:
  local: { transport: local }
databases:
  mail: { host: 127.0.0.1, port: 1, user: mailadmin, database: mailserver_usermgmt, password_env: RB_DB_PW }
http:
  api: { base_url: "http://127.0.0.1:1" }
]]):format(journal))

-- every form in which the engine itself could show PW
local function percent(s) return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
local FORMS = {
  raw = PW,
  ["json-escaped"] = json.encode(PW):sub(2, -2),
  ["sql-shown"] = (PW:gsub('[\\"]', "\\%0")),
  ["shell-quoted"] = (PW:gsub("'", "'\\''")),
  ["url-encoded"] = percent(PW),
}
local function leaks(s)
  local l = {}
  for name, form in pairs(FORMS) do if contains(s, form) then l[#l + 1] = name end end
  table.sort(l)
  return table.concat(l, ", ")
end

-- ---------------------------------------------------------------- sec_probe.lua: runbooks never see secrets
do
  local r = rb({ "run", "sec_probe", "-i", inv, "--env", "RB_OPERATOR" }, { env = { RB_OPERATOR = "op-given-secret" } })
  t.like(r.stdout, "view: password_env=nil password_file=nil", "sec_probe_inventory_view: the inventory a runbook sees has no secret fields")
  t.like(r.stdout, "read_secret inventory variable: .-not named by the operator.- denied",
    "sec_probe_read_secret: a variable the operator did not name is refused")
  t.ok(not contains(r.all, PW:reverse()), "sec_probe_read_secret: the inventory's password never reached the runbook")
  t.like(r.stdout, "read_secret file: .-not named by the operator.- denied", "sec_probe_read_secret: so is a file")
  t.like(r.stdout, "read_secret operator variable: VALUE " .. ("op-given-secret"):reverse():gsub("%p", "%%%0"),
    "sec_probe control: a variable named on the command line is read")
end

-- ---------------------------------------------------------------- run.sh: every encoding is masked
do
  local file = TMP .. "/written.txt"
  local args = { "run", "sec_encodings", "--pw-env", "RB_DB_PW", "--path", file, "-i", inv }
  local function with(extra) local a = {} for _, x in ipairs(args) do a[#a + 1] = x end for _, x in ipairs(extra) do a[#a + 1] = x end return a end
  local report = TMP .. "/report.md"
  local outs = {
    ["text --trace"] = rb(with { "--trace" }).all,
    ["json --trace"] = rb(with { "--trace", "--format", "json" }).all,
  }
  rb(with { "--report", report })
  outs.report = exec.readfile(report) or ""
  local ap = rb(with { "--apply", "--yes", "--trace" })
  outs["apply --trace"] = ap.all
  outs.journal = exec.readfile(journal) or ""
  local control = ("%02x"):rep(#PW):format(PW:byte(1, -1))
  for _, name in ipairs { "text --trace", "json --trace", "report", "apply --trace", "journal" } do
    local s = outs[name]
    t.ok(contains(s, control), "secret_encodings control: the check finds the unmasked control form in the " .. name)
    t.is(leaks(s), "", "secret_encodings: no form of the secret (raw, JSON, SQL display, shell quoting, URL) in the " .. name)
  end
  t.ok(contains(outs["text --trace"], "params: [1] ***") or contains(outs["text --trace"], "params: [1] \"***\""),
    "secret_encodings: the SQL parameter display is masked")
  t.is(exec.readfile(file), "db=" .. PW .. "\ncontrol=" .. control .. "\n", "secret_encodings control: the applied write holds the real secret")
end

-- ---------------------------------------------------------------- sec_unregistered.lua: masked from the first line
do
  local r = rb { "run", "sec_unregistered", "-i", inv }
  t.ok(contains(r.stdout, "control: " .. PW:reverse()), "sec_unregistered control: the runbook printed the variable")
  t.is(leaks(r.all), "", "sec_unregistered: the inventory's secret is masked before any connection")
end

-- ---------------------------------------------------------------- secrets shorter than 3 bytes
do
  local short = inventory("short", [[
hosts:
  local: { transport: local }
databases:
  mail: { host: 127.0.0.1, port: 1, user: u, database: d, password_env: RB_SHORT }
]])
  local r = rb({ "run", "sec_unregistered", "-i", short }, { env = { RB_DB_PW = "zq", RB_SHORT = "zq" } })
  t.is(r.status, 2, "short_secret_refused: an inventory secret shorter than 3 bytes is an inventory error")
  t.like(r.stderr, "shorter than 3 bytes", "short_secret_refused: says why")
  r = rb({ "run", "sec_unregistered", "-i", short }, { env = { RB_DB_PW = "zq1", RB_SHORT = "zq1" } })
  t.ok(r.status ~= 2 and not contains(r.stdout, "zq1\n"), "short_secret: 3 bytes are accepted, and masked from the first line")
  -- a runbook-registered short secret is masked anyway, never left in clear
  local ctx = context.new {}
  ctx:secret("ab")
  t.is(ctx:mask("xaby"), "x***y", "short_secret: one registered by a wrapper is still masked")
end

-- ---------------------------------------------------------------- url_userinfo.yaml: no password in URLs
do
  local uinv = inventory("userinfo", [[
hosts:
  local: { transport: local }
http:
  creds: { base_url: "http://admin:UrlS3cret99@127.0.0.1:1" }
]])
  local r = rb { "run", "sec_unregistered", "-i", uinv }
  t.is(r.status, 2, "url_userinfo_refused: user:password@ in base_url is an inventory error")
  t.like(r.stderr, "http%.creds%.base_url: user:password@ in a URL is refused", "url_userinfo_refused: names the key")
  t.ok(not contains(r.all, "UrlS3cret99"), "url_userinfo_refused: the password is not printed")
  local inventory_mod = require "runbook.inventory"
  t.ok(inventory_mod.url_has_userinfo("https://u@h/x") and not inventory_mod.url_has_userinfo("http://h/a@b"),
    "url_userinfo control: only the authority part counts")
end

-- ---------------------------------------------------------------- password_file: a private regular file of ours
do
  local good = TMP .. "/pw-good"
  write(good, "Fil3-S3cret\n")
  local function pwinv(name, path)
    return inventory(name, ([[
hosts:
  local: { transport: local }
databases:
  mail: { host: 127.0.0.1, port: 1, user: u, database: d, password_file: %s }
]]):format(path))
  end
  local r = rb { "run", "sec_unregistered", "-i", pwinv("pw-good", good) }
  t.isnt(r.status, 2, "password_file control: a 0600 regular file of the running user is accepted")

  local link = TMP .. "/pw-link"
  exec.run({ "ln", "-s", good, link })
  r = rb { "run", "sec_unregistered", "-i", pwinv("pw-link", link) }
  t.is(r.status, 2, "password_file_symlink: a symlink to a good file is refused (O_NOFOLLOW)")
  t.like(r.stderr, "symbolic link", "password_file_symlink: says why")

  local other = TMP .. "/pw-other"
  write(other, "Oth3r-S3cret\n")
  exec.run({ "chown", "nobody", other })
  r = rb { "run", "sec_unregistered", "-i", pwinv("pw-other", other) }
  t.is(r.status, 2, "password_file_owner: a 0600 file owned by another user is refused")
  t.like(r.stderr, "not by the user running runbook", "password_file_owner: says why")

  local fifo = TMP .. "/pw-fifo"
  exec.run({ "mkfifo", "-m", "600", fifo })
  r = rb({ "run", "sec_unregistered", "-i", pwinv("pw-fifo", fifo) }, { timeout = 15 })
  t.is(r.status, 2, ("password_file_fifo: a FIFO is refused at once (%.1fs), never read"):format(r.secs))
  t.like(r.stderr, "not a regular file", "password_file_fifo: says why")

  local tinv = inventory("token-link", ([[
hosts:
  local: { transport: local }
http:
  api: { base_url: "http://127.0.0.1:1", token_file: %s }
]]):format(link))
  r = rb { "run", "sec_unregistered", "-i", tinv }
  t.is(r.status, 2, "token_file_symlink: a symlinked token file is refused too")
end

-- ---------------------------------------------------------------- mask_quadratic.lua: masking is linear
do
  local ctx = context.new {}
  ctx:secret("pw1")
  local s = ("xxxxxxxpw1"):rep(512 * 1024 // 10)          -- 512 KiB, 52428 occurrences
  local t0 = core.now()
  local m = ctx:mask(s)
  local secs = core.now() - t0
  t.ok(secs < 1, ("mask_linear: 512 KiB with 52k occurrences masked in %.3fs (was about 5 s)"):format(secs))
  t.is(m, ("xxxxxxx***"):rep(512 * 1024 // 10), "mask_linear: every occurrence replaced")
  t.is(ctx:mask("pw1pw1xpw"), "******xpw", "mask: adjacent occurrences, and a partial one left alone")
  ctx:secret(PW)
  local all_masked = true
  for name, form in pairs(FORMS) do
    if ctx:mask("<" .. form .. ">") ~= "<***>" then all_masked = false; t.diag("not masked: " .. name) end
  end
  t.ok(all_masked, "mask: every encoding of a registered secret is masked")
end

exec.run({ "rm", "-rf", TMP })
t.done()
