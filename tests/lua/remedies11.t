-- remedies11.t: issue 11's remedies against the real lab: postfix-param-set (size-mismatch),
-- auth-cache-flush (negative-cache), message-move (sieve-junk). For each: the fault (or, where
-- the lab has no such fault yet, the same state made here under the lock and undone after), a
-- dry run shows the exact change and changes nothing, --apply --yes repairs, verifies and
-- journals, a second --apply is a clean no-op, and a new message lands in INBOX. Refusals
-- (unknown parameter, no or several matching messages, hostile values) change nothing.
-- Holds the lab's test lock exclusively (it breaks the lab on purpose).
local lab = require "rblab"
local env = lab.locked("exclusive", "remedies11.t")
local t = require "tap"
local exec = require "runbook.exec"
local core = require "runbook.core"
local rem = require "rbremedy"
local rb, esc = lab.rb, rem.esc

local USER = env.LAB_USER                                   -- info@example.test
local LOCAL, DOMAIN = USER:match("^(.-)@(.+)$")
local HOME = env.LAB_VMAIL_DIR .. "/" .. DOMAIN .. "/" .. LOCAL
local t0 = lab.now()

-- the lab's faults; RB11_OWN_STATE=1 ignores them and makes each state here (a lab whose new
-- fault is still being built)
local faults = " " .. lab.lab("faults").stdout:gsub("\n", " ") .. " "
local function lab_has(fault)
  return os.getenv("RB11_OWN_STATE") ~= "1" and faults:find(" " .. fault .. " ", 1, true) ~= nil
end

local function doveadm(...)
  local r = lab.docker("dell", "exec", env.LAB_DELL_DOVECOT_CONTAINER, "doveadm", ...)
  r.all = r.stdout .. r.stderr
  return r
end
local function postconf(host, name)
  local c = host == "ec2" and env.LAB_EC2_POSTFIX_CONTAINER or env.LAB_DELL_POSTFIX_CONTAINER
  return (lab.docker(host, "exec", c, "postconf", "-h", name).stdout:gsub("%s+$", ""))
end
local function postconf_set(host, name, value)
  local c = host == "ec2" and env.LAB_EC2_POSTFIX_CONTAINER or env.LAB_DELL_POSTFIX_CONTAINER
  lab.docker(host, "exec", c, "postconf", "-e", name .. "=" .. value)
  lab.docker(host, "exec", c, "postfix", "reload")
end

-- in(folder, msgid) -> true when a message file with that Message-ID is in the user's INBOX
-- (folder "") or in the Maildir++ folder (".Junk"), read on disk
local function in_folder(folder, msgid)
  local d = HOME .. "/" .. folder
  local r = exec.run({ "grep", "-rlsF", "--", msgid, d .. "/new", d .. "/cur" }, { timeout = 10 })
  return r ~= nil and r.stdout ~= ""
end
local function where(msgid)
  local w = {}
  if in_folder("", msgid) then w[#w + 1] = "INBOX" end
  if in_folder(".Junk", msgid) then w[#w + 1] = "Junk" end
  return #w > 0 and table.concat(w, "+") or "none"
end

-- send(tag) -> message id of a new message to USER accepted by the MX
local function send(tag, msgid)
  msgid = msgid or ("<rb11." .. tag .. "." .. core.random_hex(8) .. "@outside.test>")
  local s = lab.lab("send", USER, "--subject", "remedies11.t " .. tag, "--message-id", msgid)
  if not t.is(s.status, 0, tag .. ": the MX accepts a new message for " .. USER) then t.diag(s.all) end
  return msgid
end
-- wait_in(folder, msgid) -> true once the message is there (up to 30 s)
local function wait_in(folder, msgid)
  for _ = 1, 300 do
    if in_folder(folder, msgid) then return true end
    lab.sleep(0.1)
  end
  return false
end
local function lands_in_inbox(tag)
  local id = send(tag)
  t.ok(wait_in("", id), tag .. ": a new message lands in INBOX (" .. id .. ")")
end

-- ---------------------------------------------------------------- the runbooks load and describe themselves
local chk = lab.run({ lab.RB, "check", "runbooks/postfix-param-set.lua", "runbooks/auth-cache-flush.lua",
                      "runbooks/message-move.lua" })
if not t.is(chk.status, 0, "runbook check passes for the three new remedies") then t.diag(chk.all) end
for _, name in ipairs { "postfix-param-set", "auth-cache-flush", "message-move" } do
  local d = lab.run({ lab.RB, "describe", "runbooks/" .. name .. ".lua" }, { env = { NO_COLOR = "1" } })
  t.is(d.status, 0, "runbook describe " .. name)
  t.like(d.stdout, "runbook run " .. esc(name) .. " %-%-", "describe " .. name .. " shows its examples")
  t.like(d.stdout, "How to verify", "describe " .. name .. " shows its help")
end

-- ---------------------------------------------------------------- hostile values: exit 2, nothing runs
do
  local sum = lab.ec2_maincf_sum()
  local pwned = "/tmp/runbook-remedies11-pwned-" .. lab.pid()
  for _, args in ipairs {
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", "1; touch " .. pwned },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", "$(touch " .. pwned .. ")" },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", "1'x" },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", '1"x' },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", "1`touch " .. pwned .. "`" },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", "1\nrelayhost = [evil.test]" },
    { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit;x", "--value", "1" },
    { "run", "postfix-param-set", "--service", "ec2/postfix;x", "--name", "message_size_limit", "--value", "1" },
    { "run", "auth-cache-flush", "--addr", "a'@example.test" },
    { "run", "auth-cache-flush", "--addr", "$(touch " .. pwned .. ")@example.test" },
    { "run", "message-move", "--addr", USER, "--message-id", "<a@b>;touch " .. pwned },
    { "run", "message-move", "--addr", USER, "--message-id", "<$(touch " .. pwned .. ")@b>" },
    { "run", "message-move", "--addr", USER, "--message-id", "<a'b@c>" },
    { "run", "message-move", "--addr", USER, "--message-id", "<a@b>\n<c@d>" },
    { "run", "message-move", "--addr", USER, "--message-id", "<a@b>", "--to", "INBOX;x" },
    { "run", "message-move", "--addr", USER, "--message-id", "<a@b>", "--to", "../x" },
  } do
    local r = rb(args)
    local shown = table.concat(args, " "):gsub("\n", "\\n"):sub(1, 90)
    t.is(r.status, 2, "hostile value is a usage error: " .. shown)
    t.unlike(r.stdout, "WOULD", "nothing proposed for: " .. shown)
    t.like(r.stderr, "%S", "the refusal says why: " .. shown)
  end
  t.ok(not lab.exists(pwned), "no hostile value was executed")
  t.is(lab.ec2_maincf_sum(), sum, "hostile values left the MX's main.cf unchanged")
end

-- ---------------------------------------------------------------- postfix-param-set
do
  -- refused: a name this Postfix does not know (it says so itself: postconf -d)
  local sum = lab.ec2_maincf_sum()
  local r = rb { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limt", "--value", "1000" }
  t.is(r.status, 1, "postfix-param-set: an unknown parameter name is refused (exit 1)")
  t.like(r.stdout, "does not know a parameter message_size_limt", "postfix-param-set: says Postfix does not know the name")
  t.like(r.stdout, "postconf %-d message_size_limt", "postfix-param-set: asked the real Postfix (postconf -d)")
  t.unlike(r.stdout, "WOULD", "postfix-param-set: an unknown name proposes no change")
  t.is(lab.ec2_maincf_sum(), sum, "postfix-param-set: an unknown name changes nothing")

  -- the size mismatch: the MX accepts more than the mail server. The lab's fault when it has one,
  -- else the same state made here (the MX's limit raised above the mail server's).
  local dell_limit, ec2_orig = postconf("dell", "message_size_limit"), postconf("ec2", "message_size_limit")
  local function body()
    local ec2_now = postconf("ec2", "message_size_limit")
    dell_limit = postconf("dell", "message_size_limit")
    t.ok((tonumber(ec2_now) or 0) > (tonumber(dell_limit) or 0),
      ("size mismatch: the MX accepts %s bytes, the mail server %s"):format(ec2_now, dell_limit))
    rem.cycle {
      name = "postfix-param-set",
      args = { "run", "postfix-param-set", "--service", "ec2/postfix", "--name", "message_size_limit", "--value", dell_limit },
      shows = { "message_size_limit: " .. esc(ec2_now) .. " %-> " .. esc(dell_limit),
                "postconf %-e 'message_size_limit = " .. esc(dell_limit) .. "'", "message_size_limit default: %d+" },
      state = lab.ec2_maincf_sum,
      fixed = function()
        t.is(postconf("ec2", "message_size_limit"), dell_limit, "the MX's message_size_limit is the mail server's now")
      end,
    }
    lands_in_inbox("postfix-param-set")
  end
  if lab_has("size-mismatch") then
    rem.with_fault("size-mismatch", body)
  else
    t.diag("the lab has no size-mismatch fault: raising the MX's message_size_limit by hand")
    postconf_set("ec2", "message_size_limit", tostring((tonumber(dell_limit) or 10240000) * 2))
    local ok, err = pcall(body)
    if not ok then t.ok(false, "postfix-param-set: test body raised: " .. tostring(err)) end
    postconf_set("ec2", "message_size_limit", ec2_orig)
    t.is(postconf("ec2", "message_size_limit"), ec2_orig, "the MX's message_size_limit is back to " .. ec2_orig)
  end
end

-- ---------------------------------------------------------------- auth-cache-flush
do
  local function dovecot_finds() return doveadm("user", USER).status == 0 and "found" or "refused" end
  local ok_run = rb { "run", "auth-cache-flush", "--addr", USER }
  t.is(ok_run.status, 0, "auth-cache-flush: Dovecot finds the user on the healthy lab: exit 0")
  t.like(ok_run.stdout, "nothing to do", "auth-cache-flush: nothing to do on the healthy lab")

  local function body()
    t.is(lab.sql(("SELECT enabled FROM users WHERE email='%s'"):format(USER)), "1", "negative cache: the user is enabled in the database")
    t.is(dovecot_finds(), "refused", "negative cache: Dovecot still answers that the user does not exist")
    rem.cycle {
      name = "auth-cache-flush",
      args = { "run", "auth-cache-flush", "--addr", USER },
      shows = { "auth cache of " .. esc(USER) .. ": negative entry %-> flushed",
                "doveadm auth cache flush " .. esc(USER), "auth_cache_negative_ttl" },
      state = dovecot_finds,
      fixed = function() t.is(dovecot_finds(), "found", "Dovecot finds the user after the flush") end,
    }
    lands_in_inbox("auth-cache-flush")
  end
  if lab_has("negative-cache") then
    rem.with_fault("negative-cache", body)
  else
    -- the same state made here: the user disabled, Dovecot asked afresh (the cache keeps "no
    -- such user"), the user enabled again in the database
    local size = doveadm("-f", "flow", "user", USER)   -- warm: proves the lab answers at all
    local cache = lab.docker("dell", "exec", env.LAB_DELL_DOVECOT_CONTAINER, "doveconf", "-h", "auth_cache_size").stdout:gsub("%s+$", "")
    if cache == "0" or cache == "" then
      t.ok(true, "auth-cache-flush: the negative cache cycle # SKIP the lab's Dovecot has no auth cache (auth_cache_size = 0) and no negative-cache fault")
      t.is(size.status, 0, "auth-cache-flush: doveadm user answers on the lab")
    else
      t.diag("the lab has no negative-cache fault: making a negative cache entry by hand")
      lab.sql(("UPDATE users SET enabled=0 WHERE email='%s'"):format(USER))
      doveadm("auth", "cache", "flush", USER)     -- the cache still holds the user as found
      doveadm("user", USER)
      lab.sql(("UPDATE users SET enabled=1 WHERE email='%s'"):format(USER))
      local ok, err = pcall(body)
      if not ok then t.ok(false, "auth-cache-flush: test body raised: " .. tostring(err)) end
      doveadm("auth", "cache", "flush")
    end
  end

  -- not this remedy: a user missing from the database is pointed at user-create, a disabled
  -- one at user-enable; nothing is flushed
  local missing = rb { "run", "auth-cache-flush", "--addr", "nobody@" .. DOMAIN, "--apply", "--yes" }
  t.is(missing.status, 1, "auth-cache-flush: a user missing from the database is a problem (exit 1)")
  t.like(missing.stdout, "runbook run user%-create %-%-addr nobody@" .. esc(DOMAIN), "auth-cache-flush: recommends user-create")
  t.unlike(missing.stdout, "APPLIED", "auth-cache-flush: flushes nothing for a missing user")
  rem.with_fault("user-disabled", function()
    local r = rb { "run", "auth-cache-flush", "--addr", USER, "--apply", "--yes" }
    t.is(r.status, 1, "auth-cache-flush: a user disabled in the database is a problem (exit 1)")
    t.like(r.stdout, "runbook run user%-enable %-%-addr " .. esc(USER), "auth-cache-flush: recommends user-enable")
    t.unlike(r.stdout, "APPLIED", "auth-cache-flush: flushes nothing for a disabled user")
    t.is(#lab.audit(r.run_id), 0, "auth-cache-flush: journals nothing for a disabled user")
  end)
  doveadm("auth", "cache", "flush")     -- the disabled user's lookups may have left negative entries
end

-- ---------------------------------------------------------------- message-move
do
  local function mailboxes() return doveadm("mailbox", "list", "-u", USER).stdout end
  local created_junk = false
  local function body(msgid)
    t.is(where(msgid), "Junk", "sieve-junk: the message was saved to Junk, not INBOX")
    local state = function() return where(msgid) end
    rem.cycle {
      name = "message-move",
      args = { "run", "message-move", "--addr", USER, "--message-id", msgid },
      shows = { esc(msgid) .. ": Junk/uid %d+ %-> INBOX", "doveadm move %-u " .. esc(USER) .. " INBOX mailbox Junk uid %d+" },
      state = state,
      fixed = function() t.is(where(msgid), "INBOX", "the message landed in INBOX and left Junk") end,
    }
  end
  if lab_has("sieve-junk") then
    rem.with_fault("sieve-junk", function()
      local id = send("message-move")
      t.ok(wait_in(".Junk", id), "sieve-junk: the new message is filed into Junk")
      body(id)
    end)
  else
    t.diag("the lab has no sieve-junk fault: filing a message into Junk by hand (doveadm move)")
    if not (("\n" .. mailboxes()):find("\nJunk\n", 1, true)) then
      created_junk = doveadm("mailbox", "create", "-u", USER, "Junk").status == 0
    end
    local id = send("message-move")
    t.ok(wait_in("", id), "the new message is delivered to INBOX")
    doveadm("move", "-u", USER, "Junk", "mailbox", "INBOX", "header", "Message-ID", id)
    local ok, err = pcall(body, id)
    if not ok then t.ok(false, "message-move: test body raised: " .. tostring(err)) end
  end

  -- refusals: no such message, two messages with one Message-ID, no such mailbox
  local none = rb { "run", "message-move", "--addr", USER, "--message-id", "<rb11.none." .. core.random_hex(8) .. "@outside.test>", "--apply", "--yes" }
  t.is(none.status, 1, "message-move: no message with that Message-ID is a problem (exit 1)")
  t.like(none.stdout, "no message with Message%-ID", "message-move: says no message matches")
  t.unlike(none.stdout, "APPLIED", "message-move: moves nothing when nothing matches")
  local twice = "<rb11.twice." .. core.random_hex(8) .. "@outside.test>"
  send("twice-1", twice)
  send("twice-2", twice)
  local n = 0
  for _ = 1, 300 do
    local r = exec.run({ "grep", "-rlsF", "--", twice, HOME .. "/new", HOME .. "/cur" }, { timeout = 10 })
    n = 0
    for _ in ((r and r.stdout) or ""):gmatch("[^\n]+") do n = n + 1 end
    if n >= 2 then break end
    lab.sleep(0.1)
  end
  t.is(n, 2, "two messages with one Message-ID are in INBOX")
  local two = rb { "run", "message-move", "--addr", USER, "--message-id", twice, "--to", "Junk", "--apply", "--yes" }
  t.is(two.status, 1, "message-move: several matching messages are refused (exit 1)")
  t.like(two.stdout, "2 messages of " .. esc(USER) .. " have Message%-ID", "message-move: says how many match and refuses to choose")
  t.unlike(two.stdout, "APPLIED", "message-move: moves nothing when several match")
  local nobox = rb { "run", "message-move", "--addr", USER, "--message-id", twice, "--to", "NoSuchBox", "--apply", "--yes" }
  t.is(nobox.status, 1, "message-move: a --to mailbox the user does not have is a problem (exit 1)")
  t.like(nobox.stdout, "has no mailbox NoSuchBox", "message-move: says the mailbox does not exist")
  -- a link in the home that Maildir++ takes for a folder (".NAME" -> a file, as Pigeonhole's
  -- default ~/.dovecot.sieve is where the home is the Maildir): doveadm search over every mailbox
  -- fails on it (exit 75, "Syncing mailbox NAME failed"); the other mailboxes still count
  local id = send("stray-folder")
  t.ok(wait_in("", id), "stray-folder: the message is in INBOX")
  local stray = HOME .. "/.rb11-stray-" .. lab.pid()
  exec.run({ "ln", "-s", "dovecot-uidvalidity", stray }, { timeout = 5 })
  local ok, r = pcall(rb, { "run", "message-move", "--addr", USER, "--message-id", id })
  os.remove(stray)
  t.ok(exec.lstat(stray) == nil, "stray-folder: the link made here is removed again")
  if t.ok(ok and r.status == 0, "message-move: a mailbox that cannot be read does not stop the search (exit 0)") then
    t.like(r.stdout, "mailbox rb11%-stray%-%d+ could not be read", "message-move: names the mailbox it could not read")
    t.like(r.stdout, "is in INBOX of " .. esc(USER) .. " already: nothing to do", "message-move: still finds the message in INBOX")
  else
    t.diag(ok and r.all or tostring(r))
  end

  if created_junk then
    doveadm("expunge", "-u", USER, "mailbox", "Junk", "all")
    t.is(doveadm("mailbox", "delete", "-u", USER, "Junk").status, 0, "the Junk mailbox made here is removed again")
  end
end

local left = {}
for _, f in ipairs(lab.active_faults()) do left[#left + 1] = f end
t.is(table.concat(left, " "), "", "no fault is left active")
t.diag(("remedies11.t took %.1f s"):format(lab.now() - t0))
t.done()
