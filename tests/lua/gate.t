-- gate.t: the dry-run gate and the audit journal keep their promises (issue 9, "The gate").
-- One block per defect found by the security review (reproducers named in each heading), each
-- failing on the code before the fix, each with a control showing the check can see the effect.
-- Everything runs on this machine: the real binary, files under a private /tmp directory.
local t = require "tap"
local exec = require "runbook.exec"
local json = require "runbook.json"
local core = require "runbook.core"
local gate = require "runbook.gate"

local RB = os.getenv("RUNBOOK")
local ROOT = os.getenv("RUNBOOK_ROOT")
local SEC = ROOT .. "/tests/fixtures/security"
local TMP = "/tmp/runbook-gate-test-" .. core.getpid()
exec.run({ "rm", "-rf", TMP })
exec.run({ "mkdir", "-p", TMP })

-- rb(args, opts) -> result of the binary (status -1 on a timeout, so a hang is a failure)
local rb = require("rbrun").runner { timeout = 20,
  env = { RUNBOOK_PATH = SEC, NO_COLOR = "1", RUNBOOK_INVENTORY = "" } }
local function exists(p) return exec.lstat(p) ~= nil end
local function contains(s, x) return type(s) == "string" and s:find(x, 1, true) ~= nil end
local function write(p, s, mode) assert(exec.writefile(p, s, mode or tonumber("600", 8))) end
local function inventory(name, journal)
  local p = TMP .. "/" .. name .. ".yaml"
  write(p, ("audit: { journal: %s }\nhosts:\n  local: { transport: local }\n"):format(journal))
  return p
end
local function journal_lines(p)
  local l = {}
  for line in (exec.readfile(p) or ""):gmatch("[^\n]+") do l[#l + 1] = json.decode(line) end
  return l
end

local journal = TMP .. "/audit.jsonl"
local inv = inventory("inv", journal)

-- ---------------------------------------------------------------- s15: read_only is not the runbook's call
do
  local mark = TMP .. "/s15-mark"
  local r = rb { "run", "gate_s15", "--mark", mark, "-i", inv }
  t.ok(not exists(mark), "s15_read_only_exec_is_a_write: a dry run never runs sh, read_only or not")
  t.like(r.stdout, "WOULD host%.exec", "s15: the exec became a would-record")
  -- control: the same runbook with --apply really writes (the check can see a write)
  r = rb { "run", "gate_s15", "--mark", mark, "-i", inv, "--apply", "--yes" }
  t.ok(exists(mark), "s15 control: with --apply --yes the same exec writes the file")
  os.remove(mark); os.remove(journal)
end

-- the gate's table: only listed commands with harmless arguments are reads
for _, c in ipairs {
  { { "sh", "-c", "true" }, "write" }, { { "/bin/sh", "-c", "true" }, "write" },
  { { "env", "cat", "/x" }, "write" }, { { "sudo", "cat", "/x" }, "write" },
  { { "touch", "/x" }, "write" }, { { "cat", "/etc/hostname" }, "read" }, { { "/usr/bin/cat", "/x" }, "read" },
  { { "find", "/x", "-printf", "%p\\n" }, "read" }, { { "find", "/x", "-delete" }, "write" },
  { { "find", "/x", "-exec", "rm", "{}", "+" }, "write" }, { { "find", "/x", "-fprintf", "/y", "z" }, "write" },
  { { "postconf", "-h", "relay_domains" }, "read" }, { { "postconf", "-e", "relay_domains=x" }, "write" },
  { { "postconf", "-nX", "relay_domains" }, "write" }, { { "postconf", "relay_domains=x" }, "write" },
  { { "postqueue", "-p" }, "read" }, { { "postqueue", "-f" }, "write" }, { { "postqueue", "-i", "ABC" }, "write" },
  { { "date" }, "read" }, { { "date", "-s", "2020-01-01" }, "write" }, { { "hostname" }, "read" },
  { { "hostname", "evil" }, "write" }, { { "ss", "-tn" }, "read" }, { { "ss", "-K", "dst", "1.2.3.4" }, "write" },
  { { "doveadm", "user", "a@b" }, "read" }, { { "doveadm", "expunge", "-u", "a@b" }, "write" },
  -- issue 11: the reads the diagnosis and the remedies run, and the two remedies' writes
  { { "doveadm", "-f", "flow", "user", "a@b" }, "read" }, { { "doveadm", "auth", "lookup", "-f", "user", "a@b" }, "read" },
  -- every passdb field, the hash among them, or the password field itself: not a read
  { { "doveadm", "auth", "lookup", "a@b" }, "write" }, { { "doveadm", "auth", "lookup", "-f", "password", "a@b" }, "write" },
  { { "doveadm", "auth", "lookup", "-f", "PASS", "a@b" }, "write" }, { { "doveadm", "auth", "lookup", "-f", "user" }, "write" },
  { { "doveadm", "-f", "tab", "quota", "get", "-u", "a@b" }, "read" },
  { { "doveadm", "search", "-u", "a@b", "mailbox", "*", "header", "Message-ID", "<x@y>" }, "read" },
  { { "doveadm", "fetch", "-u", "a@b", "mailbox guid uid", "mailbox", "Junk", "uid", "3" }, "read" },
  { { "doveadm", "mailbox", "list", "-u", "a@b" }, "read" },
  { { "doveadm", "mailbox", "status", "-u", "a@b", "messages", "INBOX" }, "read" },
  { { "doveadm", "auth", "cache", "flush", "a@b" }, "write" },
  { { "doveadm", "move", "-u", "a@b", "INBOX", "mailbox", "Junk", "uid", "3" }, "write" },
  { { "doveadm", "-u", "a@b", "search", "all" }, "write" },                 -- -u is no global option
  { { "doveadm", "-o", "mail_location=x", "search", "-u", "a@b", "all" }, "write" },
  { { "doveadm", "mailbox", "delete", "-u", "a@b", "Junk" }, "write" },
  { { "doveadm", "search", "-u", "user", "move" }, "read" },               -- a query word is no command
  { { "doveadm", "auth", "test", "a@b", "pw" }, "write" }, { { "doveadm" }, "write" },
  { { "postmap", "-q", "a@b", "hash:/etc/postfix/virtual" }, "read" },
  { { "postmap", "-c", "/etc/postfix", "-q", "-d", "mysql:/etc/postfix/m.cf" }, "read" },
  { { "postmap", "-s", "hash:/etc/postfix/virtual" }, "read" },
  { { "postmap", "hash:/etc/postfix/virtual" }, "write" }, { { "postmap", "-d", "a@b", "hash:/x" }, "write" },
  { { "postmap", "-q", "a@b", "-i", "hash:/x" }, "write" }, { { "postmap", "-fq", "a@b", "hash:/x" }, "write" },
  { { "doveconf", "-h", "auth_cache_negative_ttl" }, "read" }, { { "doveconf", "-n", "-f", "protocol=lmtp" }, "read" },
  { { "doveconf", "-P" }, "write" }, { { "doveconf", "-x", "ssl_key" }, "write" },
} do
  local argv, want = c[1], c[2]
  t.is(gate.classify("host", "exec", argv), want, "gate table: " .. table.concat(argv, " ") .. " is a " .. want)
end

-- ---------------------------------------------------------------- s17: what is confirmed is what runs
do
  local mark = TMP .. "/s17-mark"
  local r = rb { "run", "gate_s17", "--mark", mark, "-i", inv, "--apply", "--yes" }
  t.ok(not exists(mark), "s17_options_read_after_confirmation: a metatable cannot swap the command after the would-record")
  t.ok(contains(r.stdout, "metatables are refused"), "s17: options with a metatable are refused at the call")
  local ran_shown = false
  for _, l in ipairs(journal_lines(journal)) do
    if l.outcome == "ok" and contains(l.detail or "", "harmless") then ran_shown = true end
  end
  t.ok(not ran_shown, "s17: the journal records no applied 'echo harmless'")
  os.remove(journal)
end

-- ---------------------------------------------------------------- s03: pairs(ctx.args) is no way in
do
  local path = TMP .. "/s03.txt"
  local r = rb { "run", "gate_s03", "--path", path, "-i", inv, "--apply", "--yes" }
  t.like(r.stdout, "forged through pairs: false; direct write: false; args: path=" .. path:gsub("%p", "%%%0"),
    "s03_pairs_args_leak: pairs(ctx.args) gives no table to write to, and the values still iterate")
  local lines = journal_lines(journal)
  t.ok(#lines >= 1, "s03 control: the write was journalled")
  local forged = false
  for _, l in ipairs(lines) do
    if type(l.args) ~= "table" or l.args.path ~= path then forged = true end
  end
  t.ok(not forged, "s03: every journal line records the operator's --path, not a forged one")
  os.remove(journal); os.remove(path)
end

-- ---------------------------------------------------------------- journal_bad.yaml: no journal, no change
do
  local target = TMP .. "/banner.txt"
  local bad = inventory("journal-bad", TMP .. "/no-such-dir/audit.jsonl")
  os.remove(target)
  local report = TMP .. "/report.md"
  local r = rb { "run", "examples/banner.lua", "--path", target, "--text", "x", "-i", bad, "--apply", "--yes",
                 "--report", report }
  t.ok(not exists(target), "journal_unwritable_no_change: the change is not made when the journal cannot be written")
  t.like(exec.readfile(report) or "", "not applied %(not_journaled%)", "journal_unwritable: the report does not call it applied")
  t.isnt(r.status, 0, "journal_unwritable: the run does not exit 0 (" .. r.status .. ")")
  t.like(r.stdout, "the change was not made", "journal_unwritable: says so")
  t.like(r.stdout, "NOT APPLIED%(not_journaled%)", "journal_unwritable: the trace does not call it applied")
  t.unlike(r.stdout, "[^T] APPLIED%(", "journal_unwritable: no APPLIED line")

  -- a symlink as the journal is refused (O_NOFOLLOW): the file it points at stays as it was
  local other = TMP .. "/other.txt"
  write(other, "keep\n")
  local link = TMP .. "/journal-link.jsonl"
  exec.run({ "ln", "-s", other, link })
  os.remove(target)
  r = rb { "run", "examples/banner.lua", "--path", target, "--text", "x", "-i", inventory("journal-link", link),
           "--apply", "--yes" }
  t.is(exec.readfile(other), "keep\n", "journal_symlink_refused: the journal's symlink is not followed")
  t.ok(not exists(target), "journal_symlink_refused: and the change was not made")

  -- an existing journal open to others is refused, not appended to
  local loose = TMP .. "/loose.jsonl"
  write(loose, "", tonumber("644", 8))
  os.remove(target)
  r = rb { "run", "examples/banner.lua", "--path", target, "--text", "x", "-i", inventory("journal-loose", loose),
           "--apply", "--yes" }
  t.is(exec.readfile(loose), "", "journal_mode_checked: a 0644 journal is not written to")
  t.like(r.stdout, "readable by group or others", "journal_mode_checked: says why")
  t.ok(not exists(target), "journal_mode_checked: and the change was not made")

  -- control: with a good journal the same run writes, intent line before outcome line
  os.remove(target)
  r = rb { "run", "examples/banner.lua", "--path", target, "--text", "x", "-i", inv, "--apply", "--yes" }
  t.is(exec.readfile(target), "x\n", "journal control: with a writable journal the change is made")
  local l = journal_lines(journal)
  t.ok(#l == 2 and l[1].phase == "intent" and l[2].phase == "outcome" and l[2].outcome == "ok",
    "journal control: intent first, then the outcome")
  os.remove(target); os.remove(journal)
end

-- ---------------------------------------------------------------- sql_is_read.lua: tokens, not text
do
  local sql = require "runbook.prim.sql"
  for _, q in ipairs {
    "SELECT 1 INTO OUTFILE '/tmp/x'", "SELECT 1 INTO/**/OUTFILE '/tmp/x'", "SELECT 1 INTO#\nOUTFILE '/tmp/x'",
    "SELECT 1 INTO -- c\nDUMPFILE '/tmp/x'", "SELECT 1 INTO\tOUTFILE '/tmp/x'", "SELECT 1 INTO @v",
    "EXPLAIN ANALYZE SELECT 1", "EXPLAIN /**/ ANALYZE SELECT 1", "EXPLAIN/*x*/ANALYZE SELECT 1",
    "SELECT NEXTVAL(s)", "SELECT GET_LOCK('x', 300)", "SELECT * FROM t FOR UPDATE",
    "/*!50000 DELETE */ FROM users", "/*!UPDATE users SET enabled=1*/ SELECT 1", "SELECT 1; DELETE FROM t",
    "DELETE FROM users", "SELECT 'unterminated",
  } do
    t.ok(not sql.is_read(q), ("sql_is_read_tokens: %s is not a read"):format(q:gsub("\n", "\\n")))
  end
  for _, q in ipairs {
    "SELECT 1", "  select count(*) AS n from users WHERE note IS NULL OR note = ?", "SHOW TABLES",
    "DESCRIBE users", "EXPLAIN SELECT * FROM users", "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "SELECT 'INTO OUTFILE' AS x", "SELECT `into` FROM t", "/* why */ SELECT 1", "SELECT 1 -- INTO",
    "SELECT REPLACE(a, 'x', 'y') FROM t",
  } do
    t.ok(sql.is_read(q), ("sql_is_read control: %q is a read"):format(q))
  end
end

-- ---------------------------------------------------------------- fifo_hang.sh: a FIFO never blocks
do
  local fifo = TMP .. "/fifo"
  exec.run({ "mkfifo", "-m", "600", fifo })
  local r = rb({ "run", "examples/banner.lua", "--path", fifo, "--text", "x", "--deadline", "5", "-i", inv }, { timeout = 15 })
  t.ok(r.secs < 4, ("fifo_read_path: a FIFO as a read path ends the run at once (%.1fs)"):format(r.secs))
  t.like(r.stdout, "not a regular file", "fifo_read_path: says why")
  r = rb({ "run", "examples/banner.lua", "--path", TMP .. "/f.txt", "--text", "x", "-i", fifo }, { timeout = 15 })
  t.is(r.status, 2, ("fifo_inventory: a FIFO as the inventory is an inventory error (%.1fs)"):format(r.secs))
  t.like(r.stderr, "not a regular file", "fifo_inventory: says why")
  local probe = TMP .. "/readfifo.lua"
  write(probe, ("local v, m, c = require('runbook.exec').readfile(%q) print(tostring(v) .. ' ' .. tostring(c))"):format(fifo))
  local pr = exec.run({ RB, "lua", probe }, { timeout = 5 })
  t.is(pr and pr.stdout, "nil type\n", "fifo: exec.readfile refuses a FIFO without blocking (code type)")
  local f = TMP .. "/plain.txt"
  write(f, "data")
  t.is(exec.readfile(f), "data", "fifo control: a regular file is read")
end

-- ---------------------------------------------------------------- maildir-fix never follows a symlink
do
  local vm, victim = TMP .. "/vmail", TMP .. "/victim"
  exec.run({ "mkdir", "-p", vm, victim .. "/cur", vm .. "/plain.test/info/cur" })
  write(victim .. "/cur/mail", "x")
  write(vm .. "/plain.test/info/cur/mail", "x")
  exec.run({ "chown", "-R", "nobody:nogroup", victim, vm .. "/plain.test" })
  exec.run({ "ln", "-s", victim, vm .. "/linked.test" })
  local mf = TMP .. "/maildir.yaml"
  write(mf, ([[
audit: { journal: %s }
hosts:
  dell:
    transport: local
    services:
      dovecot: { process: true, kind: dovecot, maildir_root: %s }
mail: { mailserver_host: dell, maildir_owner: "root:root" }
]]):format(journal, vm))
  local r = rb { "run", "runbooks/maildir-fix.lua", "--domain", "linked.test", "-i", mf, "--apply", "--yes" }
  t.is(exec.stat(victim .. "/cur/mail").user, "nobody",
    "maildir_fix_symlink: a symlinked domain directory is not followed (the target keeps its owner)")
  t.like(r.stdout, "symbolic link", "maildir_fix_symlink: the run says why it changes nothing")
  t.is(r.status, 1, "maildir_fix_symlink: a problem, exit 1")
  -- control: a real directory with the wrong owner is fixed by the same run
  r = rb { "run", "runbooks/maildir-fix.lua", "--domain", "plain.test", "-i", mf, "--apply", "--yes" }
  t.is(exec.stat(vm .. "/plain.test/info/cur/mail").user, "root", "maildir_fix control: a real Maildir is given back")
  t.like(r.stdout, "chown %-R %-P %-h root:root %-%- " .. (vm .. "/plain.test"):gsub("%p", "%%%0"),
    "maildir_fix: chown -R -P -h on the path without a trailing slash")
end

exec.run({ "rm", "-rf", TMP })
-- ---------------------------------------------------------------- docker in the read-only table
do
  local gate = require "runbook.gate"
  for _, c in ipairs {
    { { "docker", "-H", "unix:///x.sock", "logs", "--tail", "5", "c" }, true },
    { { "docker", "--host=unix:///x", "ps" }, true },
    { { "docker", "inspect", "c" }, true },
    { { "docker", "-H", "x", "exec", "c", "rm", "-rf", "/" }, false },
    { { "docker", "restart", "c" }, false },
    { { "docker", "--debug", "ps" }, false },          -- an option the gate does not know: a write
    { { "docker", "-Hx", "logs", "c" }, false },
    { { "docker" }, false },
  } do
    t.is(gate.argv_is_read(c[1]), c[2], "docker_readonly: " .. table.concat(c[1], " ") .. " is " .. (c[2] and "a read" or "a write"))
  end
end

t.done()
