-- postfix.t: runbook.prim.postfix against the lab's ec2 Postfix container (over SSH and docker
-- exec): postconf reads, postconf_set (dry run leaves main.cf byte-identical; apply changes it,
-- reloads the running Postfix and verifies), postqueue -j records and postqueue_flush.
-- Changes ec2's configuration for a moment, so it holds the lab's test lock exclusively and
-- restores every value it touched, whatever happens.
local t = require "tap"
local fix = require "sshfix"
local env = fix.lab_locked("exclusive")
local context = require "runbook.context"
local inventory = require "runbook.inventory"
local core = require "runbook.core"
local pfmod = require "runbook.prim.postfix"

local SVC = "ec2/postfix"
local main_cf = env.LAB_DIR .. "/ec2/postfix/etc/main.cf"

local JOURNAL = "/tmp/runbook-postfix-test-" .. require("runbook.core").getpid() .. ".jsonl"   -- applied writes need one
local function inv()
  return assert(inventory.validate {
    defaults = { timeout = 20, connect_timeout = 5 }, audit = { journal = JOURNAL },
    hosts = { ec2 = { transport = "ssh", address = env.LAB_EC2_ADDR, port = tonumber(env.LAB_EC2_SSH_PORT),
      user = env.LAB_EC2_SSH_USER, key = env.LAB_SSH_KEY, known_hosts = env.LAB_SSH_KNOWN_HOSTS,
      docker = { socket = env.LAB_EC2_DOCKER_SOCK },
      services = { postfix = { container = env.LAB_EC2_POSTFIX_CONTAINER, kind = "postfix" } } } } })
end

local events = {}
local ctx = context.new { inventory = inv(), trace = true, sinks = { function(ev) events[#events + 1] = ev end } }
local actx = context.new { inventory = inv(), apply = true, yes = true }

-- independent plumbing: docker exec straight into the container (not through our code)
local DK = ("docker -H unix://%s exec %s "):format(env.LAB_EC2_DOCKER_SOCK, env.LAB_EC2_POSTFIX_CONTAINER)
local function dk(cmd) return fix.sh(DK .. cmd) end
local function sha(path) local s = fix.slurp(path) return s and core.sha256(s) end

-- ---------------------------------------------------------------- reads
local _, direct = dk("postconf -h relay_domains")
direct = direct:gsub("%s+$", "")
local v, list = ctx:postconf(SVC, "relay_domains")
t.is(v, direct, "postconf one name -> its value (same as postconf -h run directly)")
local set = {}
for _, d in ipairs(list or {}) do set[d] = true end
t.ok(set["example.test"] and set["shop.test"], "relay_domains parsed into a list")
local m, lists = ctx:postconf(SVC, { "relay_domains", "relay_transport", "mynetworks" })
t.is(m and m.relay_transport, "lmtp:[" .. env.LAB_DELL_ADDR .. "]:" .. env.LAB_DELL_LMTP_PORT, "several names -> table")
t.ok(lists and #lists.mynetworks >= 1, "mynetworks split into a list")
local all = ctx:postconf(SVC)
local n = 0
for _ in pairs(all or {}) do n = n + 1 end
t.ok(all and all.relay_domains == direct and n >= 5, ("nil -> postconf -n, every non-default parameter (%d)"):format(n))
local r, msg, code = ctx:postconf(SVC, "no_such_parameter_rbtest")
t.is(code, "notfound", "unknown parameter -> notfound: " .. tostring(msg))
t.is(table.concat(pfmod.split_list("a, b,c\t d  ,e"), "|"), "a|b|c|d|e", "split_list: whitespace and commas")

-- ---------------------------------------------------------------- postconf_set, with restore
local orig_relay, orig_defer = direct, ctx:postconf(SVC, "defer_transports")
local defer_was_set = all ~= nil and all.defer_transports ~= nil
local sum0 = sha(main_cf)
t.ok(sum0, "main.cf of ec2 is readable on this machine")

local ids = {}
local SENDER = "rbtest-postqueue-" .. fix.pid .. "@outside.test"   -- ours alone in the queue
local function body()
  local newv = orig_relay .. ", rbtest.test"
  r, msg, code = ctx:postconf_set(SVC, "relay_domains", newv)
  t.is(code, "dryrun", "postconf_set without apply: dry run")
  t.is(sha(main_cf), sum0, "dry run leaves main.cf byte-identical (sha256)")
  local would
  for _, ev in ipairs(events) do if ev.event == "would" then would = ev end end
  t.is(would and would.before, orig_relay, "would-record: the current value (before)")
  t.is(would and would.after, newv, "would-record: the new value (after)")
  t.ok(would and would.detail:find("postconf -e 'relay_domains = " .. newv .. "'", 1, true),
    "would-record: the exact command: " .. tostring(would and would.detail))
  t.ok(would and would.detail:find("postfix reload", 1, true), "... and the reload")
  t.is(would and would.target, SVC .. ":relay_domains", "would-record target")

  -- before: the running Postfix refuses to relay for rbtest.test
  local swaks = ("swaks --server %s --port 25 --local-interface %s --helo rbtest.test --from %s --to probe@rbtest.test --quit-after RCPT --timeout 10 2>&1"):format(
    env.LAB_EC2_ADDR, env.LAB_SENDER_ADDR, env.LAB_SENDER)
  local _, before_out = fix.sh(swaks)
  t.like(before_out, "Relay access denied", "before: the MX refuses to relay for rbtest.test")

  r, msg = actx:postconf_set(SVC, "relay_domains", newv)
  t.ok(r and r.value == newv and r.reloaded, "apply: set, reloaded, verified: " .. tostring(msg))
  t.is(r and r.before, orig_relay, "result carries the old value")
  t.isnt(sha(main_cf), sum0, "main.cf changed")
  t.like(fix.slurp(main_cf) or "", "\nrelay_domains = " .. newv:gsub("%p", "%%%0") .. "\n", "main.cf has the new line")
  local _, after_out = fix.sh(swaks)
  t.like(after_out, "<%-%s+250 ", "after the reload the running MX accepts RCPT for rbtest.test")

  r, msg = actx:postconf_set(SVC, "relay_domains", orig_relay)
  t.ok(r and r.value == orig_relay, "restore the original value: " .. tostring(msg))
  t.is(sha(main_cf), sum0, "main.cf is byte-identical to the start again")

  -- ------------------------------------------------------------ queue: hold mail with defer_transports
  r, msg = actx:postconf_set(SVC, "defer_transports", "lmtp")
  t.ok(r, "defer_transports = lmtp (mail to the relay domains stays queued): " .. tostring(msg))
  for i = 1, 2 do
    local ok = dk(("sh -c 'printf \"Subject: rbtest postqueue %d\\n\\nbody\\n\" | sendmail -f %s %s'"):format(
      i, SENDER, env.LAB_USER))
    t.ok(ok, "message " .. i .. " submitted inside the container")
  end
  local q
  for _ = 1, 300 do   -- 30 s at most: a loaded machine
    q = ctx:postqueue(SVC)
    local deferred = 0
    for _, rec in ipairs(q or {}) do
      if rec.queue_name == "deferred" and rec.recipients[1] and rec.recipients[1].address == env.LAB_USER
        and rec.sender == SENDER then deferred = deferred + 1 end
    end
    if deferred >= 2 then break end
    core.sleep(0.1)
  end
  local mine = {}
  for _, rec in ipairs(q or {}) do
    if rec.queue_name == "deferred" and rec.sender == SENDER then mine[#mine + 1] = rec end
  end
  t.is(#mine, 2, "postqueue -j: both messages deferred")
  local rec = mine[1] or { recipients = {} }
  t.ok(type(rec.queue_id) == "string" and rec.queue_id:match("^%w+$"), "record: queue_id " .. tostring(rec.queue_id))
  t.ok(math.type(rec.arrival_time) == "integer" and math.abs(rec.arrival_time - os.time()) < 120, "record: arrival_time")
  t.ok(math.type(rec.message_size) == "integer" and rec.message_size > 0, "record: message_size")
  t.is(rec.recipients[1] and rec.recipients[1].address, env.LAB_USER, "record: recipient address")
  t.ok(rec.recipients[1] and type(rec.recipients[1].delay_reason) == "string"
    and rec.recipients[1].delay_reason ~= "", "record: delay_reason " .. tostring(rec.recipients[1] and rec.recipients[1].delay_reason))
  for i, x in ipairs(mine) do ids[i] = x.queue_id end

  -- state(id) -> nil when gone, else "deferred transport" while untouched by a flush
  local function state(id)
    for _, x in ipairs(ctx:postqueue(SVC) or {}) do
      if x.queue_id == id then
        local dr = x.recipients[1] and x.recipients[1].delay_reason
        if x.queue_name == "deferred" and dr == "deferred transport" then return "deferred transport" end
        return x.queue_name .. ": " .. tostring(dr)
      end
    end
    return nil
  end
  local function flushed(id)   -- left the queue, or was tried again (dell may be faulted)
    for _ = 1, 300 do
      if state(id) ~= "deferred transport" then return true, state(id) or "delivered" end
      core.sleep(0.1)
    end
    return false, state(id)
  end
  -- defer_transports is still lmtp: nothing leaves "deferred transport" unless it is flushed
  r, msg, code = ctx:postqueue_flush(SVC, ids[1])
  t.is(code, "dryrun", "postqueue_flush is a write: dry run")
  core.sleep(1)
  t.is(ids[1] and state(ids[1]), "deferred transport", "... the message is untouched")
  r, msg = actx:postqueue_flush(SVC, ids[1])
  t.is(r, true, "postqueue -i QID applied: " .. tostring(msg))
  local gone, how = flushed(ids[1])
  t.ok(gone, "the flushed message was delivered or retried at once (" .. tostring(how) .. ")")
  t.is(ids[2] and state(ids[2]), "deferred transport", "the other one was not touched")
  r, msg = actx:postqueue_flush(SVC)
  t.is(r, true, "postqueue -f applied: " .. tostring(msg))
  gone, how = flushed(ids[2])
  t.ok(gone, "postqueue -f flushed the rest (" .. tostring(how) .. ")")
  if defer_was_set then
    r, msg = actx:postconf_set(SVC, "defer_transports", orig_defer)
  else   -- it was the default: remove the line again (postconf -X), as the lab had it
    r = dk("postconf -X defer_transports") and dk("postfix reload")
  end
  t.ok(r and ctx:postconf(SVC, "defer_transports") == orig_defer, "defer_transports restored: " .. tostring(msg))

end

local ok, err = pcall(body)
t.ok(ok, "test body ran without raising: " .. tostring(err))
-- restore whatever may still differ, with plain docker exec
local _, cur = dk("postconf -h relay_domains defer_transports")
if not cur:find(orig_relay, 1, true) or sha(main_cf) ~= sum0 then
  dk(("postconf -e 'relay_domains = %s'"):format(orig_relay))
  if defer_was_set then dk(("postconf -e 'defer_transports = %s'"):format(orig_defer))
  else dk("postconf -X defer_transports") end
  dk("postfix reload")
end
t.is(sha(main_cf), sum0, "ec2 main.cf is as it was before the test")
-- our test messages must not linger if dell could not take them
for _, x in ipairs(ctx:postqueue(SVC) or {}) do
  if x.sender == SENDER then dk("postsuper -d " .. x.queue_id) end
end
fix.down()
actx:close()
ctx:close()
os.remove(JOURNAL)
t.done()
