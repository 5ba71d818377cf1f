-- undelivered.t: the fault matrix on the real lab.
-- For the healthy lab, every lab fault (tests/lab/faults.sh and faults-more.sh), every stall and
-- pairs of two:
--   * `runbook run undelivered` gives the right status, hop and cause, and no wrong cause; no run
--     with a fault active ends healthy; the healthy lab raises no alarm; stalls end within 20 s;
--   * the recommended fix, as a dry run, leaves both Postfix configurations and Dovecot's, every
--     table of the user database, the Maildir tree and both hosts' containers unchanged
--     (checksums before and after; a part that cannot be read FAILS the test unless the row says
--     why it cannot be read, and then it must really be unreadable);
--   * with --apply --yes the recommended fixes (followed as an operator would, at most 4, a new
--     message after each) repair it;
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

-- Everything a fix could change, part by part: both Postfix configuration directories and
-- Dovecot's (every file's sha256, read from the host, so a stopped container does not hide
-- them), every table of the user database (mariadb-dump), the Maildir tree (names, owners,
-- modes, sizes) and the containers of both hosts. A part that cannot be read is UNREADABLE: the
-- snapshot says which, and a comparison with an unreadable part fails unless the matrix row
-- declares why it cannot be read (and then the test checks that it really cannot).
local LABDIR = env.LAB_DIR or "/tmp/runbook-lab"
local PARTS = {
  { "ec2 postfix config", { "sh", "-c", 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum', "sh", LABDIR .. "/ec2/postfix/etc" } },
  { "dell postfix config", { "sh", "-c", 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum', "sh", LABDIR .. "/dell/postfix/etc" } },
  { "dell dovecot config", { "sh", "-c", 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum', "sh", LABDIR .. "/dell/dovecot/etc" } },
  { "db", { "timeout", "10", "mariadb-dump", "--defaults-extra-file=" .. env.LAB_DB_DEFAULTS_FILE, "--skip-dump-date", "--skip-comments",
            "--compact", "--skip-extended-insert", env.LAB_DB_NAME } },
  { "maildir", { "sh", "-c", 'cd "$1" && find . -printf "%p %u %g %m %s\\n" | sort', "sh", env.LAB_VMAIL_DIR } },
  { "ec2 containers", cat({ "timeout", "10" }, cat(EC2, { "ps", "-a", "--format", "{{.Names}} {{.State}} {{.CreatedAt}}" })) },
  { "dell containers", cat({ "timeout", "10" }, cat(DELL, { "ps", "-a", "--format", "{{.Names}} {{.State}} {{.CreatedAt}}" })) },
}

-- snapshot() -> sha256 of all parts, the text, {part = true} for parts that could not be read
local function snapshot()
  local parts, unreadable = {}, {}
  for _, p in ipairs(PARTS) do
    local r = sh(p[2], 30)
    local out = r.stdout or ""
    if r.status ~= 0 or not out:find("%S") then
      unreadable[p[1]] = true
      out = "UNREADABLE (exit " .. tostring(r.status) .. "): " .. (r.stderr or "")
    end
    parts[#parts + 1] = p[1] .. "\n" .. out
  end
  local s = table.concat(parts, "\n")
  return core.sha256(s), s, unreadable
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

-- run undelivered; returns verdict, set of fail causes, their list, the result, seconds taken
local function diagnose(extra_env, addr)
  local t0 = core.now()
  local r = sh({ RB, "run", "undelivered", "--addr", addr or ADDR, "-i", INV, "--format", "json" }, 120, extra_env)
  local secs = core.now() - t0
  local verdict, causes, list = nil, {}, {}
  for l in r.stdout:gmatch("[^\n]+") do
    local ev = json.decode(l)
    if ev and ev.event == "verdict" then verdict = ev end
    if ev and ev.event == "finding" and ev.severity == "fail" and ev.cause then
      if not causes[ev.cause] then list[#list + 1] = ev.cause end
      causes[ev.cause] = true
    end
  end
  verdict = verdict or { status = "none", error = r.stderr }
  -- causes the verdict weighed beside its own ("also found: a, b")
  local also = tostring(verdict.message or ""):match("also found: ([^)]*)")
  for c in (also or ""):gmatch("[%w_]+") do causes[c] = true end
  return verdict, causes, list, r, secs
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

-- expected verdicts. allow: other fail causes the fault legitimately produces as well; also: the
-- second fault of a pair, found too; within: the run must end within this many seconds (stalls);
-- unreadable: snapshot parts the fault makes unreadable during the dry run, with the reason.
local DB_DOWN = { db = "the database is stopped; the containers part shows the dry run did not start it" }
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
  { faults = { "db-down" }, status = "problem", hop = "dell.db", cause = "db_down", fix = "container-restart", unreadable = DB_DOWN },
  { faults = { "disk-almost-full" }, status = "escalate", hop = "dell.disk", cause = "disk_full" },
  -- kinds outside the original list (issue 10): each ends in its cause, never healthy
  { faults = { "mx-recipient-refused" }, status = "problem", hop = "ec2.postfix", cause = "mx_recipient_refused" },
  { faults = { "alias-rewrite" }, status = "problem", hop = "ec2.postfix", cause = "address_rewritten" },
  { faults = { "size-limit" }, status = "problem", hop = "dell.dovecot", cause = "mailserver_size_limit", allow = { size_limit_mismatch = true } },
  { faults = { "mail-loop" }, status = "problem", hop = "ec2.postfix", cause = "mail_loop" },
  { faults = { "tls-required" }, status = "problem", hop = "ec2->dell", cause = "relay_tls_failed", allow = { tls_level_mismatch = true } },
  { faults = { "storage-insufficient" }, status = "problem", hop = "ec2.queue", cause = "storage_insufficient" },
  { faults = { "transport-unavailable" }, status = "problem", hop = "ec2.postfix", cause = "transport_unavailable" },
  { faults = { "lookup-failure" }, status = "problem", hop = "ec2.postfix", cause = "mx_lookup_failure" },
  { faults = { "domain-local" }, status = "problem", hop = "ec2.postfix", cause = "domain_local", allow = { domain_in_two_classes = true } },
  -- every part answers, yet the mail goes somewhere else (issue 11): the chain, Dovecot's view,
  -- the saved message and the pair checks find it; the verdict is never healthy
  { faults = { "catchall" }, status = "problem", hop = "dell.alias", cause = "delivered_elsewhere", chain = true },
  { faults = { "alias-elsewhere" }, status = "problem", hop = "dell.alias", cause = "delivered_elsewhere", chain = true },
  { faults = { "sieve-junk" }, status = "problem", hop = "dell.dovecot", cause = "delivered_to_junk", fixname = "message-move" },
  { faults = { "plus-tag" }, addr = "info+tag@example.test", status = "problem", hop = "dell.dovecot", cause = "plus_tag_unsupported",
    allow = { delimiter_mismatch = true } },
  { faults = { "address-case" }, status = "problem", hop = "dell.db", cause = "address_case_mismatch" },
  { faults = { "negative-cache" }, status = "problem", hop = "dell.dovecot", cause = "auth_negative_cache", fix = "auth-cache-flush" },
  { faults = { "size-mismatch" }, status = "problem", hop = "ec2.postfix", cause = "size_limit_mismatch", fix = "postfix-param-set" },
  { faults = { "domain-two-classes" }, status = "problem", hop = "ec2.postfix", cause = "domain_in_two_classes", fix = "postfix-param-set" },
  -- stalls: a daemon, port or docker socket that stops answering; the run ends within 20 s
  { faults = { "mx-stall" }, status = "problem", hop = "ec2.smtp", cause = "mx_not_greeting", within = 20 },
  { faults = { "lmtp-stall" }, status = "problem", hop = "ec2->dell", cause = "relay_not_greeting", within = 20 },
  { faults = { "db-stall" }, status = "escalate", hop = "dell.db", cause = "incomplete", within = 20 },
  { faults = { "dns-stall" }, status = "escalate", hop = "dns", cause = "incomplete", within = 20 },
  { faults = { "docker-stall-ec2" }, status = "escalate", hop = "ec2.docker", cause = "incomplete", within = 20 },
  { faults = { "docker-stall-dell" }, status = "escalate", hop = "dell.docker", cause = "incomplete", within = 20 },
  -- two at once: both are found, the verdict names the one that stops the mail first
  { faults = { "relay-domain-missing", "dovecot-down" }, status = "problem", hop = "ec2.postfix", cause = "relay_domain_missing",
    fix = "relay-domain-add", also = "dovecot_down" },
  { faults = { "user-disabled", "maildir-permissions" }, status = "problem", hop = "dell.db", cause = "user_disabled",
    fix = "user-enable", also = "maildir_permissions" },
  { faults = { "mx-port-closed", "db-down" }, status = "problem", hop = "ec2.smtp", cause = "mx_unreachable",
    fix = "container-restart", also = "db_down", unreadable = DB_DOWN },
  { faults = { "mx-recipient-refused", "quota-exceeded" }, status = "problem", hop = "ec2.postfix", cause = "mx_recipient_refused",
    also = "quota_exceeded" },
  { faults = { "dns-stall", "user-missing" }, status = "problem", hop = "dell.db", cause = "user_missing", within = 20 },
  { faults = { "tls-required", "user-disabled" }, status = "problem", hop = "ec2->dell", cause = "relay_tls_failed", also = "user_disabled",
    allow = { tls_level_mismatch = true } },
  { faults = { "lmtp-stall", "relay-domain-missing" }, status = "problem", hop = "ec2.postfix", cause = "relay_domain_missing",
    also = "relay_not_greeting", within = 20 },
}

-- MATRIX_ONLY=db-down,healthy runs the rows whose name contains one of the words (debugging)
local only = os.getenv("MATRIX_ONLY")
local function selected(name)
  if not only then return true end
  for w in only:gmatch("[^,%s]+") do if name:find(w, 1, true) then return true end end
  return false
end

-- the dry run of the verdict's fix changes nothing, and every part that should be readable was
local function dry_run_changes_nothing(name, row, fix)
  local before, _, unread_before = snapshot()
  local argv = fix_argv(fix)
  local dry = sh(argv, 120, fix_env(argv))
  local after, text, unread = snapshot()
  t.is(dry.status, 1, name .. ": the fix's dry run proposes a change (exit 1)")
  t.like(dry.stdout, "WOULD ", name .. ": the dry run shows what it would do")
  local declared = row.unreadable or {}
  for _, p in ipairs(PARTS) do
    local part = p[1]
    if declared[part] then
      t.ok(unread[part] and unread_before[part], ("%s: snapshot part '%s' is unreadable as declared (%s)"):format(name, part, declared[part]))
    else
      t.ok(not unread[part] and not unread_before[part], ("%s: snapshot part '%s' was read before and after the dry run"):format(name, part))
    end
  end
  t.is(after, before, name .. ": the dry run left config, database, Maildir and containers unchanged")
  if after ~= before then t.diag(text) end
end

-- apply the recommended fixes until the diagnosis is healthy (an operator follows the chain,
-- and sends a new message after each fix: the logs then show whether it arrives)
local function fixes_repair(name, v)
  -- at most 4: a pair needs two fixes, and mail deferred meanwhile waits for a queue-flush
  for round = 1, 4 do
    local argv = fix_argv(v.fix)
    local fenv = fix_env(argv)
    argv[#argv + 1] = "--apply"
    argv[#argv + 1] = "--yes"
    local ap = sh(argv, 180, fenv)
    t.is(ap.status, 0, ("%s: round %d: %s --apply --yes exits 0 %s"):format(name, round, v.fix:match("run (%S+)"),
      ap.status == 0 and "" or (ap.stdout:sub(-600) .. ap.stderr)))
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    delivered_after(n, 20)
    v = diagnose()
    if v.status == "healthy" then return true, v end
    if not (v.fix and v.fix:find("^runbook run ")) then return false, v end
    t.diag(("%s: after round %d the diagnosis says %s: %s"):format(name, round, tostring(v.cause), tostring(v.fix)))
  end
  return false, v
end

for _, row in ipairs(MATRIX) do
  local name = #row.faults == 0 and "healthy" or table.concat(row.faults, "+")
  if not selected(name) then goto continue end
  t.diag("---- " .. name)
  local healed = sh({ LAB, "heal", "all" }, 180)
  -- when it fails, what heal all said goes to make check's failure log (CI once failed here
  -- with nothing said: Dovecot's cached "doesn't exist" after db-down, since mended in the lab)
  if not t.ok(healed.status == 0, name .. ": lab starts healthy") then t.diag((healed.stdout or "") .. (healed.stderr or "")) end
  for _, f in ipairs(row.faults) do
    local r = sh({ LAB, "fault", f }, 120)
    t.ok(r.status == 0, ("%s: fault %s applied %s"):format(name, f, r.status == 0 and "" or r.stderr))
  end
  -- the sender tries, as before every real investigation
  sh({ LAB, "send", row.addr or ADDR }, 60)

  local v, causes, list, res, secs = diagnose(nil, row.addr)
  t.is(v.status, row.status, name .. ": verdict status")
  if row.fixname then t.like(v.fix or "", "^runbook run " .. row.fixname:gsub("%-", "%%-") .. " ", name .. ": the fix is the " .. row.fixname .. " runbook") end
  if row.chain or #row.faults == 0 then
    -- the JSON carries the resolution chain of both Postfix hops and Dovecot's view
    local seen = {}
    for l in res.stdout:gmatch("[^\n]+") do
      local ev = json.decode(l)
      if ev and ev.event == "finding" and ev.severity == "info" then
        local m = tostring(ev.message)
        if m:find("^resolution on ec2/postfix") then seen.mx = true end
        if m:find("^resolution on dell/postfix") then seen.ms = true end
        if m:find("^Dovecot's view of ") then seen.dc = true end
      end
    end
    t.ok(seen.mx and seen.ms and seen.dc, name .. ": the JSON carries both hops' resolution chain and Dovecot's view")
  end
  if #row.faults > 0 then t.isnt(v.status, "healthy", name .. ": a fault is active: the verdict is not healthy") end
  if row.within then t.ok(secs <= row.within, ("%s: the run ends within %d s (%.1f s)"):format(name, row.within, secs)) end
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
  if row.also then t.ok(causes[row.also], name .. ": the second fault is found too: " .. row.also) end

  if row.fix and v.fix then
    dry_run_changes_nothing(name, row, v.fix)
    local healthy, last = fixes_repair(name, v)
    if not t.ok(healthy, name .. ": the recommended fixes repair it (" .. tostring(last.cause) .. ")") then
      t.diag(("last verdict: %s %s at %s: %s"):format(tostring(last.status), tostring(last.cause), tostring(last.hop), tostring(last.message)))
      for _, e in ipairs(last.evidence or {}) do t.diag(("  evidence: %s %s: %s"):format(tostring(e.host), tostring(e.source), tostring(e.text))) end
    end
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": a new message is saved in the Maildir after the fix")
  elseif row.cause then
    -- fixes outside runbook's reach (DNS, network, quota, disk, stalls): the lab heals, delivery returns
    t.ok(sh({ LAB, "heal", "all" }, 180).status == 0, name .. ": healed by the lab")
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": a new message is saved once healed")
  else
    local n = maildir_count()
    sh({ LAB, "send", ADDR }, 60)
    t.ok(delivered_after(n, 30), name .. ": the healthy lab delivers")
    local again = diagnose()
    t.is(again.status, "healthy", name .. ": and the diagnosis after it raises no alarm")
  end
  sh({ LAB, "heal", "all" }, 180)
  ::continue::
end

-- An address that is only an alias (the seed's abuse@ -> postmaster@, no users row of its own) on
-- the healthy lab: the alias is the answer, never user_missing (a mailbox for it would change
-- nothing: Postfix rewrites first), and the fix follows the target.
do
  sh({ LAB, "heal", "all" }, 180)
  local v = diagnose(nil, "abuse@example.test")
  t.is(v.status, "problem", "alias-only address: status problem (the mail goes to another mailbox)")
  t.is(v.cause, "delivered_elsewhere", "alias-only address: the cause is the alias")
  t.unlike(v.message or "", "also found: [^)]*user_missing", "alias-only address: user_missing is not weighed as a cause (the row's absence stays a finding)")
  t.like(v.fix or "", "^runbook run undelivered %-%-addr postmaster@example%.test ", "alias-only address: the fix follows the alias target")
end

-- An operator's edit: a copy of the runbook (and its lib/) with a changed message and an extra
-- check, run from RUNBOOK_PATH without rebuilding anything.
do
  local dir = "/tmp/runbook-edit-" .. core.getpid()
  sh({ "mkdir", "-p", dir .. "/lib" })
  for _, l in ipairs { "causes", "replies", "verdict", "mailops", "chain", "resolve" } do
    exec.writefile(dir .. "/lib/" .. l .. ".lua", assert(exec.readfile(ROOT .. "/runbooks/lib/" .. l .. ".lua")), tonumber("644", 8))
  end
  local src = assert(exec.readfile(ROOT .. "/runbooks/undelivered.lua"))
  local edited, n1 = src:gsub('"path: sender %-> ', '"OPERATOR EDIT: path: sender -> ')
  local n2
  edited, n2 = edited:gsub('(local CHECKS = {\n)',
    '%1  { name = "site.extra", hop = "logs", needs = {}, confirms = {}, title = "an operator\'s own check",\n' ..
    '    run = function(ctx) ctx:note("site-specific check ran") end },\n')
  t.ok(n1 == 1 and n2 == 1, "the copy of the runbook was edited")
  exec.writefile(dir .. "/undelivered.lua", edited, tonumber("644", 8))
  local r = sh({ RB, "run", "undelivered", "--addr", ADDR, "-i", INV }, 60, { RUNBOOK_PATH = dir })
  t.like(r.stdout, "OPERATOR EDIT: path: sender %-> ", "an edited message shows without a rebuild")
  t.like(r.stdout, "site%-specific check ran", "an added check runs without a rebuild")
  local c = sh({ RB, "check", dir .. "/undelivered.lua" })
  t.is(c.status, 0, "runbook check accepts the edited copy")
  sh({ "rm", "-rf", dir })
end

t.done()
