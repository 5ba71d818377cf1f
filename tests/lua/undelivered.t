-- undelivered.t: the fault matrix on the real lab.
-- For the healthy lab and every lab fault (and combinations of two):
--   * `runbook run undelivered` gives the right status, hop and cause, and no wrong cause;
--   * the recommended fix, as a dry run, leaves every config file, database row, Maildir and
--     container unchanged (checksums before and after);
--   * with --apply --yes the recommended fixes (followed as an operator would, at most 3) repair it;
--   * then a new message is saved in the Maildir.
-- Also: an operator's edit to a copy of the runbook takes effect without a rebuild.
local t = require "tap"
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"

local RB = os.getenv("RUNBOOK")
local ROOT = os.getenv("RUNBOOK_ROOT")
local LAB = ROOT .. "/tests/lab/lab"
local INV = ROOT .. "/examples/lab.yaml"
local ADDR = "info@example.test"

local function sh(argv, timeout, env)
  return exec.run(argv, { timeout = timeout or 120, env = env }) or { status = -1, stdout = "", stderr = "timeout" }
end

-- exclusive use of the lab (this test breaks it), brought up if it is down
local env = require("rblab").locked("exclusive", "undelivered fault matrix")
local EC2 = { "docker", "-H", env.LAB_EC2_DOCKER_HOST }
local DELL = { "docker", "-H", env.LAB_DELL_DOCKER_HOST }
local function cat(a, b) local o = {} for _, x in ipairs(a) do o[#o + 1] = x end for _, x in ipairs(b) do o[#o + 1] = x end return o end

-- Everything a fix could change, as one string: both Postfix configurations, the database rows,
-- the Maildir tree (names, owners, modes, sizes) and the containers' states.
local function snapshot()
  local parts = {}
  local function add(label, r) parts[#parts + 1] = label .. "\n" .. (r.stdout or "") .. "\n" .. tostring(r.status) end
  add("ec2 main.cf", sh(cat(EC2, { "exec", env.LAB_EC2_POSTFIX_CONTAINER, "sh", "-c", 'cat "$(postconf -h config_directory)/main.cf"' })))
  add("dell main.cf", sh(cat(DELL, { "exec", env.LAB_DELL_POSTFIX_CONTAINER, "sh", "-c", 'cat "$(postconf -h config_directory)/main.cf"' })))
  add("db", sh({ "mariadb", "--defaults-extra-file=" .. env.LAB_DB_DEFAULTS_FILE, env.LAB_DB_NAME, "-e",
                 "SELECT * FROM domains ORDER BY id; SELECT * FROM users ORDER BY email" }))
  add("maildir", sh({ "sh", "-c", 'cd "$1" && find . -printf "%p %u %g %m %s\\n" | sort', "sh", env.LAB_VMAIL_DIR }))
  add("ec2 containers", sh(cat(EC2, { "ps", "-a", "--format", "{{.Names}} {{.State}} {{.CreatedAt}}" })))
  add("dell containers", sh(cat(DELL, { "ps", "-a", "--format", "{{.Names}} {{.State}} {{.CreatedAt}}" })))
  local s = table.concat(parts, "\n")
  return core.sha256(s), s
end

local function maildir_count()
  local r = sh({ "sh", "-c", 'find "$1/new" "$1/cur" -type f 2>/dev/null | wc -l', "sh", env.LAB_VMAIL_DIR .. "/example.test/info" })
  return tonumber(r.stdout) or 0
end

local function delivered_after(before, secs)
  local t0 = core.now()
  while core.now() - t0 < (secs or 20) do
    if maildir_count() > before then return true end
    core.sleep(0.5)
  end
  return false
end

-- run undelivered; returns verdict, set of fail causes, raw stdout
local function diagnose(extra_env)
  local r = sh({ RB, "run", "undelivered", "--addr", ADDR, "-i", INV, "--format", "json" }, 120, extra_env)
  local verdict, causes, list = nil, {}, {}
  for l in r.stdout:gmatch("[^\n]+") do
    local ev = json.decode(l)
    if ev and ev.event == "verdict" then verdict = ev end
    if ev and ev.event == "finding" and ev.severity == "fail" and ev.cause then
      if not causes[ev.cause] then list[#list + 1] = ev.cause end
      causes[ev.cause] = true
    end
  end
  return verdict or { status = "none", error = r.stderr }, causes, list, r
end

-- a fix command line -> argv for the binary (it is plain words: runbook quotes what needs it)
local function fix_argv(fix)
  local argv = { RB }
  local rest = fix:gsub("^runbook ", "")
  for w in rest:gmatch("%S+") do
    w = w:gsub("^'(.*)'$", "%1")
    argv[#argv + 1] = w
  end
  return argv
end

local PW_ENV = { RB_TEST_NEW_PASSWORD = "Lab-Passw0rd-" .. core.random_hex(4) }

local function fix_env(argv)
  if argv[3] == "user-create" then
    argv[#argv + 1] = "--password-env"
    argv[#argv + 1] = "RB_TEST_NEW_PASSWORD"
    return PW_ENV
  end
  return nil
end

-- expected verdicts. allow: other fail causes the fault legitimately produces as well.
local MATRIX = {
  { faults = {}, status = "healthy" },
  { faults = { "relay-domain-missing" }, status = "problem", hop = "ec2.postfix", cause = "relay_domain_missing", fix = "relay-domain-add" },
  { faults = { "relay-transport-wrong" }, status = "problem", hop = "ec2.postfix", cause = "relay_transport_wrong", fix = "relay-transport-set" },
  { faults = { "mx-missing" }, status = "problem", hop = "dns", cause = "mx_missing" },
  { faults = { "mx-wrong" }, status = "problem", hop = "dns", cause = "mx_wrong" },
  { faults = { "mx-port-closed" }, status = "problem", hop = "ec2.smtp", cause = "mx_unreachable", fix = "container-restart" },
  { faults = { "dell-unreachable" }, status = "problem", hop = "ec2->dell", cause = "relay_unreachable" },
  { faults = { "dovecot-down" }, status = "problem", hop = "dell.dovecot", cause = "dovecot_down", fix = "container-restart" },
  { faults = { "maildir-permissions" }, status = "problem", hop = "dell.maildir", cause = "maildir_permissions", fix = "maildir-fix" },
  { faults = { "user-missing" }, status = "problem", hop = "dell.db", cause = "user_missing", fix = "user-create" },
  { faults = { "user-disabled" }, status = "problem", hop = "dell.db", cause = "user_disabled", fix = "user-enable" },
  { faults = { "domain-missing" }, status = "problem", hop = "dell.db", cause = "domain_missing", fix = "domain-create", allow = { user_missing = true } },
  { faults = { "quota-exceeded" }, status = "problem", hop = "dell.dovecot", cause = "quota_exceeded" },
  { faults = { "queue-stuck" }, status = "problem", hop = "ec2.queue", cause = "queue_stuck", fix = "queue-flush" },
  { faults = { "db-down" }, status = "problem", hop = "dell.db", cause = "db_down", fix = "container-restart" },
  { faults = { "disk-almost-full" }, status = "escalate", hop = "dell.disk", cause = "disk_full" },
  -- two at once: both are found, the verdict names the one that stops the mail first
  { faults = { "relay-domain-missing", "dovecot-down" }, status = "problem", hop = "ec2.postfix", cause = "relay_domain_missing",
    fix = "relay-domain-add", also = "dovecot_down" },
  { faults = { "user-disabled", "maildir-permissions" }, status = "problem", hop = "dell.db", cause = "user_disabled",
    fix = "user-enable", also = "maildir_permissions" },
  { faults = { "mx-port-closed", "db-down" }, status = "problem", hop = "ec2.smtp", cause = "mx_unreachable",
    fix = "container-restart", also = "db_down" },
}

local only = os.getenv("MATRIX_ONLY")   -- e.g. MATRIX_ONLY=db-down to run one row while debugging

for _, row in ipairs(MATRIX) do
  local name = #row.faults == 0 and "healthy" or table.concat(row.faults, "+")
  if only and not name:find(only, 1, true) then goto continue end
  t.diag("---- " .. name)
  t.ok(sh({ LAB, "heal", "all" }, 120).status == 0, name .. ": lab starts healthy")
  for _, f in ipairs(row.faults) do
    local r = sh({ LAB, "fault", f }, 120)
    t.ok(r.status == 0, ("%s: fault %s applied %s"):format(name, f, r.status == 0 and "" or r.stderr))
  end
  -- the sender tries, as before every real investigation
  sh({ LAB, "send", ADDR }, 60)

  local v, causes, list = diagnose()
  t.is(v.status, row.status, name .. ": verdict status")
  if row.cause then
    t.is(v.cause, row.cause, name .. ": verdict cause")
    t.is(v.hop, row.hop, name .. ": verdict hop")
    t.ok(type(v.fix) == "string" and #v.fix > 0, name .. ": the verdict names a fix: " .. tostring(v.fix))
    t.ok(v.evidence and #v.evidence > 0, name .. ": the verdict carries evidence")
    if row.fix then t.like(v.fix or "", "^runbook run " .. row.fix:gsub("%-", "%%-") .. " ", name .. ": the fix is the " .. row.fix .. " runbook") end
  else
    t.is(v.cause, nil, name .. ": no cause")
    t.is(v.exit, 0, name .. ": exit 0")
  end
  local wrong = {}
  for _, c in ipairs(list) do
    if c ~= row.cause and c ~= row.also and not (row.allow and row.allow[c]) then wrong[#wrong + 1] = c end
  end
  t.is(table.concat(wrong, ","), "", name .. ": no wrong cause")
  if row.also then t.ok(causes[row.also], name .. ": the second fault is a finding too: " .. row.also) end

  if row.fix and v.fix then
    -- the dry run changes nothing
    local before = snapshot()
    local argv = fix_argv(v.fix)
    local fenv = fix_env(argv)
    local dry = sh(argv, 120, fenv)
    local after, text = snapshot()
    t.is(dry.status, 1, name .. ": the fix's dry run proposes a change (exit 1)")
    t.like(dry.stdout, "WOULD ", name .. ": the dry run shows what it would do")
    t.is(after, before, name .. ": the dry run left config, database, Maildir and containers unchanged")
    if after ~= before then t.diag(text) end
    -- apply the recommended fixes until the diagnosis is healthy (an operator follows the chain)
    local healthy = false
    for round = 1, 3 do
      argv = fix_argv(v.fix)
      fenv = fix_env(argv)
      argv[#argv + 1] = "--apply"
      argv[#argv + 1] = "--yes"
      local ap = sh(argv, 180, fenv)
      t.is(ap.status, 0, ("%s: round %d: %s --apply --yes exits 0 %s"):format(name, round, v.fix:match("run (%S+)"),
        ap.status == 0 and "" or (ap.stdout:sub(-600) .. ap.stderr)))
      v = diagnose()
      if v.status == "healthy" then healthy = true; break end
      if not (v.fix and v.fix:find("^runbook run ")) then break end
      t.diag(("%s: after round %d the diagnosis says %s: %s"):format(name, round, tostring(v.cause), tostring(v.fix)))
    end
    t.ok(healthy, name .. ": the recommended fixes repair it (" .. tostring(v.cause) .. ")")
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": a new message is saved in the Maildir after the fix")
  elseif row.cause then
    -- fixes outside runbook's reach (DNS, network, quota, disk): the lab heals, delivery returns
    t.ok(sh({ LAB, "heal", "all" }, 120).status == 0, name .. ": healed by the lab")
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": a new message is saved once healed")
  else
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": the healthy lab delivers")
  end
  sh({ LAB, "heal", "all" }, 120)
  ::continue::
end

-- An operator's edit: a copy of the runbook with a changed message and an extra check, run from
-- RUNBOOK_PATH without rebuilding anything.
do
  local dir = "/tmp/runbook-edit-" .. core.getpid()
  sh({ "mkdir", "-p", dir })
  local src = assert(exec.readfile(ROOT .. "/runbooks/undelivered.lua"))
  local edited, n1 = src:gsub("mail for %%s is delivered", "OPERATOR EDIT: mail for %%s arrives")
  local n2
  edited, n2 = edited:gsub('(%-%- The verdict: the first cause along the path)',
    'ctx:step("site.extra", function() ctx:note("site-specific check ran") end, "an operator\'s own check")\n    %1')
  t.ok(n1 == 1 and n2 == 1, "the copy of the runbook was edited")
  exec.writefile(dir .. "/undelivered.lua", edited, tonumber("644", 8))
  local r = sh({ RB, "run", "undelivered", "--addr", ADDR, "-i", INV }, 60, { RUNBOOK_PATH = dir })
  t.like(r.stdout, "OPERATOR EDIT: mail for info@example%.test arrives", "an edited message shows without a rebuild")
  t.like(r.stdout, "site%-specific check ran", "an added step runs without a rebuild")
  local c = sh({ RB, "check", dir .. "/undelivered.lua" })
  t.is(c.status, 0, "runbook check accepts the edited copy")
  sh({ "rm", "-rf", dir })
end

t.done()
