-- remedies.t: every remedy runbook against the real lab. For each: create the lab fault, a dry
-- run prints the exact change and changes nothing, --apply --yes repairs it (checked through the
-- lab itself: postconf in the container, the database row, the Maildir owner, docker inspect,
-- the queue) and journals one audit line, a second --apply is a clean no-op, and the fault is
-- healed whatever happened. Hostile values are usage errors that change nothing. Holds the
-- lab's test lock exclusively (it breaks the lab on purpose).
local lab = require "rblab"
local env = lab.locked("exclusive", "remedies.t")
local t = require "tap"
local rb = lab.rb

local rem = require "rbremedy"           -- the remedy lifecycle as a test checks it
local with_fault, remedy_cycle, esc = rem.with_fault, rem.cycle, rem.esc

local t0 = lab.now()

-- ---------------------------------------------------------------- every runbook loads
local chk = lab.run({ lab.RB, "check",
  "runbooks/relay-domain-add.lua", "runbooks/relay-transport-set.lua", "runbooks/container-restart.lua",
  "runbooks/maildir-fix.lua", "runbooks/domain-create.lua", "runbooks/user-create.lua",
  "runbooks/user-enable.lua", "runbooks/queue-flush.lua" })
if not t.is(chk.status, 0, "runbook check passes for every remedy") then t.diag(chk.all) end
local n_ok = 0
for _ in chk.stdout:gmatch("%f[^\n%z]ok ") do n_ok = n_ok + 1 end
t.is(n_ok, 8, "check lists 8 runbooks as ok")

-- ---------------------------------------------------------------- relay-domain-add
with_fault("relay-domain-missing", function()
  local cur = lab.ec2_postconf("relay_domains")
  t.unlike(cur, "example%.test", "fault: example.test left relay_domains (" .. cur .. ")")
  local dry, ap = remedy_cycle {
    name = "relay-domain-add",
    args = { "run", "relay-domain-add", "--domain", "example.test" },
    shows = { "relay_domains: " .. esc(cur) .. " %-> " .. esc(cur) .. ", example%.test",
              "postconf %-e 'relay_domains = " .. esc(cur) .. ", example%.test'",
              "services/mailserver/terraform/main%.tf" },
    state = lab.ec2_maincf_sum,
    fixed = function()
      t.is(lab.ec2_postconf("relay_domains"), cur .. ", example.test", "relay_domains in the container keeps the list and adds the domain")
    end,
  }
  t.like(dry.stdout, "Relay access denied", "relay-domain-add: says what the missing domain causes")
  t.like(ap.stdout, "postfix reload", "relay-domain-add: reloads Postfix")
end)

-- ---------------------------------------------------------------- relay-transport-set
with_fault("relay-transport-wrong", function()
  local cur = lab.ec2_postconf("relay_transport")
  t.is(cur, "lmtp:[127.0.0.21]:2525", "fault: relay_transport points at the stale address")
  local _, ap = remedy_cycle {
    name = "relay-transport-set",
    args = { "run", "relay-transport-set" },
    shows = { "relay_transport: " .. esc(cur) .. " %-> lmtp:%[127%.0%.0%.20%]:2525" },
    state = lab.ec2_maincf_sum,
    fixed = function()
      t.is(lab.ec2_postconf("relay_transport"), "lmtp:[127.0.0.20]:2525", "relay_transport in the container is the inventory's value")
    end,
  }
  t.like(ap.stdout, "next hop 127%.0%.0%.20:2525 answers", "relay-transport-set: the next hop answers after the change")
  local bad = rb { "run", "relay-transport-set", "--value", "lmtp:[127.0.0.20]:2525;reboot" }
  t.is(bad.status, 2, "relay-transport-set: a hostile --value is a usage error")
  local shape = rb { "run", "relay-transport-set", "--value", "lmtp:[127.0.0.20:2525" }
  t.is(shape.status, 1, "relay-transport-set: a malformed transport is refused before anything is read")
  t.like(shape.stdout, "is not a relay transport", "relay-transport-set: says why the value is refused")
  t.unlike(shape.stdout, "WOULD", "relay-transport-set: a malformed value proposes no change")
end)

-- ---------------------------------------------------------------- container-restart
with_fault("dovecot-down", function()
  local function running()
    return (lab.docker("dell", "inspect", "-f", "{{.State.Running}}", env.LAB_DELL_DOVECOT_CONTAINER).stdout:gsub("%s+$", ""))
  end
  t.is(running(), "false", "fault: the Dovecot container is stopped")
  remedy_cycle {
    name = "container-restart",
    args = { "run", "container-restart", "--service", "dell/dovecot" },
    shows = { "dell/dovecot: exited %-> running %(restarted%)", "docker restart mailserver%-dovecot%-1" },
    state = running,
    fixed = function()
      t.is(running(), "true", "the Dovecot container runs again")
      local r = lab.run({ "bash", "-c", "exec 3<>/dev/tcp/127.0.0.20/2525 && head -c 3 <&3" }, { timeout = 10 })
      t.is(r.stdout, "220", "Dovecot LMTP answers 220 on 127.0.0.20:2525")
    end,
  }
end)

-- the mail database: the restart is followed by doveadm reload in Dovecot (fresh auth processes:
-- no stale connection, no "user doesn't exist" cached during the outage), and it is fixed only
-- when Dovecot finds a user again
with_fault("db-down", function()
  local function running()
    return (lab.docker("dell", "inspect", "-f", "{{.State.Running}}", env.LAB_DELL_MARIADB_CONTAINER).stdout:gsub("%s+$", ""))
  end
  t.is(running(), "false", "fault: the MariaDB container is stopped")
  local _, ap = remedy_cycle {
    name = "container-restart (database)",
    args = { "run", "container-restart", "--service", "dell/mariadb" },
    shows = { "dell/mariadb: exited %-> running %(restarted%)", "docker restart mailserver%-mariadb%-1",
              "WOULD service%.exec on dell: dell/dovecot: doveadm reload" },
    state = running,
    audit_lines = 2,
    fixed = function()
      t.is(running(), "true", "the MariaDB container runs again")
      local u = lab.docker("dell", "exec", env.LAB_DELL_DOVECOT_CONTAINER, "doveadm", "user", "info@example.test")
      t.like(u.stdout, "home", "Dovecot finds info@example.test again (doveadm user)")
    end,
  }
  t.like(ap.stdout, "Dovecot finds users again", "container-restart (database): the verdict says Dovecot finds users again")
end)

-- ---------------------------------------------------------------- maildir-fix
with_fault("maildir-permissions", function()
  local dir = env.LAB_VMAIL_DIR .. "/example.test"
  local owner = function() return lab.owner(dir) end
  t.like(owner(), "^root:root", "fault: the domain's Maildir belongs to root")
  remedy_cycle {
    name = "maildir-fix",
    args = { "run", "maildir-fix", "--domain", "example.test", "--addr", "info@example.test" },
    shows = { "owner of /var/mail/vmail/example%.test: root:root %-> vmail:vmail",
              "chown %-R %-P %-h vmail:vmail %-%- /var/mail/vmail/example%.test" },
    state = owner,
    fixed = function()
      t.like(owner(), "^vmail:vmail", "the domain's Maildir belongs to vmail again")
      local r = lab.run({ "find", dir, "!", "-user", "vmail" }, { timeout = 10 })
      t.is(r.stdout, "", "nothing under the domain's Maildir is owned by anyone else")
    end,
  }
end)

-- ---------------------------------------------------------------- domain-create
with_fault("domain-missing", function()
  local row = function() return lab.sql("SELECT name FROM domains WHERE name='example.test'") end
  t.is(row(), "", "fault: the domain row is gone")
  remedy_cycle {
    name = "domain-create",
    args = { "run", "domain-create", "--domain", "example.test" },
    shows = { 'POST /api/domains {"name":"example%.test"}', "POST http://127%.0%.0%.20:5001/api/domains" },
    state = row,
    fixed = function() t.is(row(), "example.test", "the domains table has example.test again") end,
  }
end)

-- ---------------------------------------------------------------- user-create
with_fault("user-missing", function()
  local row = function() return lab.sql("SELECT email, enabled FROM users WHERE email='info@example.test'") end
  t.is(row(), "", "fault: the user row is gone")
  local pw = "Rb-" .. require("runbook.core").random_hex(12)
  local penv = { RB_TEST_NEWPW = pw }
  local report = "/tmp/runbook-remedies-report-" .. lab.pid() .. ".md"

  local none = rb { "run", "user-create", "--addr", "info@example.test" }
  t.is(none.status, 1, "user-create: no password source and no terminal: exit 1")
  t.like(none.stdout, "no password", "user-create: says that a password is needed and how to give it")
  t.unlike(none.stdout, "WOULD", "user-create: without a password nothing is proposed")
  local cl = rb { "run", "user-create", "--addr", "info@example.test", "--password", pw }
  t.is(cl.status, 2, "user-create: --password on the command line is a usage error")
  t.like(cl.stderr, "unknown argument %-%-password", "user-create: --password is an unknown argument")
  t.ok(not cl.all:find(pw, 1, true), "user-create: the refused --password value is not echoed")

  local dry, ap = remedy_cycle {
    name = "user-create",
    args = { "run", "user-create", "--addr", "info@example.test", "--password-env", "RB_TEST_NEWPW" },
    env = penv,
    shows = { 'POST /api/users {"email":"info@example%.test","password":"%*%*%*","domain":"example%.test"}' },
    state = row,
    fixed = function() t.is(row(), "info@example.test\t1", "the users table has info@example.test, enabled") end,
  }
  -- the same run with every output the engine has: the password must appear in none
  local heal = lab.lab("heal", "user-missing")
  t.is(heal.status, 0, "user-create: heal before the traced run")
  local f = lab.lab("fault", "user-missing")
  t.is(f.status, 0, "user-create: fault again for the traced run")
  local tr = rb({ "run", "user-create", "--addr", "info@example.test", "--password-env", "RB_TEST_NEWPW",
                  "--apply", "--yes", "--trace", "--report", report }, { env = penv })
  t.is(tr.status, 0, "user-create --trace --report --apply: exit 0")
  local js = rb({ "run", "user-create", "--addr", "info@example.test", "--password-env", "RB_TEST_NEWPW", "--format", "json" }, { env = penv })
  local rep = require("runbook.exec").readfile(report) or ""
  local _, audit_text = lab.audit(tr.run_id)
  local _, audit_ap = lab.audit(ap.run_id)
  t.like(tr.stdout, '"password":"%*%*%*"', "user-create --trace: the request body shows the password as ***")
  t.ok(rep ~= "", "user-create: the --report file was written")
  t.ok(audit_text ~= "", "user-create: the traced apply was journalled")
  for label, text in pairs { stdout = ap.stdout .. tr.stdout .. dry.stdout .. js.stdout, stderr = ap.stderr .. tr.stderr .. dry.stderr,
                             report = rep, audit = audit_text .. audit_ap } do
    t.ok(not text:find(pw, 1, true), "user-create: the password never appears in " .. label)
  end
  os.remove(report)
end)

-- ---------------------------------------------------------------- user-enable
with_fault("user-disabled", function()
  local row = function() return lab.sql("SELECT enabled FROM users WHERE email='info@example.test'") end
  t.is(row(), "0", "fault: the user is disabled")
  remedy_cycle {
    name = "user-enable",
    args = { "run", "user-enable", "--addr", "info@example.test" },
    shows = { "users%.enabled of info@example%.test: 0 %-> 1", "PATCH http://127%.0%.0%.20:5001/api/users/info%%40example%.test" },
    state = row,
    fixed = function() t.is(row(), "1", "the user is enabled again (enabled=1)") end,
  }
  local missing = rb { "run", "user-enable", "--addr", "nobody@example.test" }
  t.is(missing.status, 1, "user-enable: an unknown user is a problem")
  t.like(missing.stdout, "runbook run user%-create %-%-addr nobody@example%.test", "user-enable: recommends user-create for an unknown user")
end)

-- ---------------------------------------------------------------- queue-flush (and queue-report on a real queue)
-- stuck_message() -> queue id of a message deferred in ec2's queue, fault to heal. The lab's
-- queue-stuck fault first; when it leaves nothing queued (the message slipped through), the same
-- situation made by hand: relay_transport at a dead address, a message deferred there, the
-- right value back without a flush (Postfix retries it only after minimal_backoff_time).
local function stuck_message()
  local f = lab.lab("fault", "queue-stuck")
  local qid = (require("runbook.exec").readfile(env.LAB_DIR .. "/faults/queue-stuck.state/queue_id") or ""):gsub("%s+$", "")
  if f.status == 0 and lab.ec2_queue()[qid] then return qid, "queue-stuck" end
  t.diag("lab fault queue-stuck left nothing in the queue (" .. f.all:gsub("\n", " ") .. "): making a deferred message by hand")
  lab.lab("heal", "queue-stuck")
  lab.lab("fault", "relay-transport-wrong")
  local s = lab.lab("send", env.LAB_USER, "--subject", "remedies.t queue-flush")
  qid = s.stdout:match("^(%w+)")
  for _ = 1, 100 do
    local e = qid and lab.ec2_queue()[qid]
    if e and e.queue_name == "deferred" then break end
    lab.sleep(0.1)
  end
  local c = env.LAB_EC2_POSTFIX_CONTAINER
  lab.docker("ec2", "exec", c, "postconf", "-e", "relay_transport=lmtp:[127.0.0.20]:2525")
  lab.docker("ec2", "exec", c, "postfix", "reload")
  return qid or "NONE", "relay-transport-wrong"
end

do
  local qid, fault = stuck_message()
  local ok, err = pcall(function()
    local e = lab.ec2_queue()[qid]
    t.ok(e and e.queue_name == "deferred", "a message waits deferred in ec2's queue (" .. qid .. ", " .. fault .. ")")
    local reason = e and e.recipients and e.recipients[1] and e.recipients[1].delay_reason or "?"

    local rep = rb { "run", "queue-report", "--service", "ec2/postfix" }
    t.is(rep.status, 1, "queue-report: mail waits: exit 1")
    t.like(rep.stdout, esc(qid) .. "%s+deferred", "queue-report: lists the queue id as deferred")
    t.like(rep.stdout, "example%.test%s+1 recipient", "queue-report: one recipient waits at example.test")
    t.like(rep.stdout, esc(reason), "queue-report: says why (the delay reason: " .. reason .. ")")
    t.like(rep.stdout, "runbook run queue%-flush %-%-queue%-id " .. esc(qid) .. " %-%-service ec2/postfix", "queue-report: recommends the flush")

    remedy_cycle {
      name = "queue-flush",
      args = { "run", "queue-flush", "--service", "ec2/postfix", "--queue-id", qid },
      shows = { esc(qid) .. ": deferred %-> retried now %(postqueue %-i " .. esc(qid) .. "%)", "postqueue %-i " .. esc(qid) },
      state = function() return lab.ec2_queue()[qid] and "queued" or "gone" end,
      fixed = function() t.ok(lab.ec2_queue()[qid] == nil, "the message left ec2's queue") end,
    }
    local tr = rb { "run", "trace-message", "--queue-id", qid, "--since", "10m" }
    t.is(tr.status, 0, "after the flush trace-message shows the message delivered")
  end)
  if not ok then t.ok(false, "queue-flush: test body raised: " .. tostring(err)) end
  local h = lab.lab("heal", fault)
  if not t.is(h.status, 0, "lab heal " .. fault) then t.diag(h.all) end
end

-- ---------------------------------------------------------------- hostile values change nothing
local sum = lab.ec2_maincf_sum()
local pwned = "/tmp/runbook-remedies-pwned-" .. lab.pid()
local hostile = {
  { "run", "relay-domain-add", "--domain", "x.test; touch " .. pwned },
  { "run", "domain-create", "--domain", "x.test$(touch " .. pwned .. ")" },
  { "run", "user-enable", "--addr", "a'@x.test" },
  { "run", "user-create", "--addr", "a'@x.test", "--password-env", "X" },
  { "run", "user-create", "--addr", "a@x.test", "--password-env", "X;touch " .. pwned },
  { "run", "maildir-fix", "--domain", "../../etc" },
  { "run", "container-restart", "--service", "dell/dovecot;touch " .. pwned },
  { "run", "queue-flush", "--service", "ec2/postfix", "--queue-id", "ABC;touch" },
}
for _, args in ipairs(hostile) do
  local r = rb(args)
  t.is(r.status, 2, "hostile value is a usage error: " .. table.concat(args, " "):sub(1, 70))
end
t.ok(not lab.exists(pwned), "no hostile value was executed")
t.is(lab.ec2_maincf_sum(), sum, "hostile values left main.cf unchanged")

-- a domain that does not exist is not created by user-create
local nod = rb({ "run", "user-create", "--addr", "someone@no-such-domain.test", "--password-env", "RB_TEST_NEWPW" },
  { env = { RB_TEST_NEWPW = "irrelevant-pw" } })
t.is(nod.status, 1, "user-create: a missing domain is a problem (exit 1)")
t.like(nod.stdout, "runbook run domain%-create %-%-domain no%-such%-domain%.test", "user-create: recommends domain-create")
t.is(lab.sql("SELECT COUNT(*) FROM domains WHERE name='no-such-domain.test'"), "0", "user-create did not create the domain")

local active = lab.lab("status").stdout:match("active faults%s+([^\n]*)") or ""
local left = {}
for _, f in ipairs { "relay-domain-missing", "relay-transport-wrong", "dovecot-down", "maildir-permissions",
                     "domain-missing", "user-missing", "user-disabled", "queue-stuck" } do
  if (" " .. active .. " "):find(" " .. f .. " ", 1, true) then left[#left + 1] = f end
end
t.is(table.concat(left, " "), "", "none of this test's faults is left active")
t.diag(("remedies.t took %.1f s"):format(lab.now() - t0))
t.done()
