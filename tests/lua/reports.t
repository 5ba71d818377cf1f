-- reports.t: the report runbooks (trace-message, mail-stats, follow, queue-report) against the
-- real lab: messages are sent through the MX with `lab send` and the reports must show their
-- hops, their counts and their lines. queue-report on a queue that holds mail is covered in
-- remedies.t (it needs the queue-stuck fault). Holds the lab's test lock shared (reads only).
local lab = require "rblab"
local env = lab.locked("shared", "reports.t")
local t = require "tap"
local exec = require "runbook.exec"
local core = require "runbook.core"
local rb = lab.rb

local function esc(s) return (s:gsub("%p", "%%%0")) end
local tag = core.random_hex(6)

-- send(addr, msgid) -> queue id on the MX (or nil, output)
local function send(addr, msgid)
  local r = lab.lab("send", addr, "--message-id", msgid)
  local qid = r.stdout:match("^(%w+)%s*$")
  return qid, r.all
end

-- ---------------------------------------------------------------- trace-message
local msgid = ("<rb-trace.%s@outside.test>"):format(tag)
local qid, out = send(env.LAB_USER, msgid)
if not t.ok(qid ~= nil, "lab send: the MX accepted the test message") then t.diag(out) end
qid = qid or "NONE"

-- wait until Dovecot saved it (the tracker needs the last hop in the log)
local tr
for _ = 1, 40 do
  tr = rb { "run", "trace-message", "--message-id", msgid, "--since", "10m" }
  if tr.status == 0 then break end
  lab.sleep(0.5)
end
if not t.is(tr.status, 0, "trace-message: the message was delivered (exit 0)") then t.diag(tr.all) end
t.like(tr.stdout, "queue ids: [%w ]*" .. qid, "trace-message: finds the MX queue id from the Message-ID")
t.like(tr.stdout, "hop 1 +%S+ ec2[^\n]- +postfix queue " .. qid .. " %(client unknown%[127%.0%.0%.99%]%)", "trace-message: hop 1 is the MX's queue file, from the outside sender")
t.like(tr.stdout, ", sent via 127%.0%.0%.20%[127%.0%.0%.20%]:2525", "trace-message: the MX relayed over LMTP to dell")
t.like(tr.stdout, "hop 2 +%S+ dell +dovecot session %S+: saved to INBOX", "trace-message: hop 2 is Dovecot saving to INBOX")
t.like(tr.stdout, "delay [%d.]+s: a=[%d.]+s b=[%d.]+s c=[%d.]+s d=[%d.]+s", "trace-message: delays a/b/c/d per Postfix hop")
t.like(tr.stdout, "the time went: a=[%d.]+s b=[%d.]+s c=[%d.]+s d=[%d.]+s; ", "trace-message: says where the time went")
t.like(tr.stdout, "to " .. esc(env.LAB_USER) .. " from sender@outside%.test, message%-id " .. esc(msgid) .. ": delivered", "trace-message: the message line names to, from, id and delivered")
t.like(tr.stdout, "VERDICT: HEALTHY", "trace-message: healthy verdict for a delivered message")

local tq = rb { "run", "trace-message", "--queue-id", qid, "--since", "10m" }
t.is(tq.status, 0, "trace-message --queue-id: exit 0")
t.like(tq.stdout, "hop 2 +%S+ dell +dovecot session %S+: saved to INBOX", "trace-message --queue-id: follows to Dovecot too")
t.like(tq.stdout, esc(msgid), "trace-message --queue-id: learns the Message-ID")

local nf = rb { "run", "trace-message", "--message-id", "<no-such." .. tag .. "@outside.test>", "--since", "10m" }
t.is(nf.status, 1, "trace-message: an unknown Message-ID is a problem (exit 1)")
t.like(nf.stdout, "cause: not_found", "trace-message: says it was not found")
local none = rb { "run", "trace-message" }
t.is(none.status, 1, "trace-message: neither --message-id nor --queue-id: exit 1 with a message")
t.like(none.stdout, "give %-%-message%-id or %-%-queue%-id", "trace-message: says what to give")
t.is(rb({ "run", "trace-message", "--message-id", "<a b>" }).status, 2, "trace-message: a Message-ID with a space is a usage error")

-- a message that is refused: the MX rejects a domain it does not relay
local bad_domain = "rbstats-" .. tag .. ".test"
local rj = lab.lab("send", "x@" .. bad_domain)
t.isnt(rj.status, 0, "lab send to a domain the MX does not relay is refused")

-- ---------------------------------------------------------------- mail-stats
local ms = rb { "run", "mail-stats", "--since", "10m" }
t.is(ms.status, 1, "mail-stats: a rejected message makes it exit 1")
t.like(ms.stdout, "domain%s+received%s+sent%s+deferred%s+bounced%s+rejected", "mail-stats: the table header")
t.like(ms.stdout, esc(bad_domain) .. "%s+0%s+0%s+0%s+0%s+1\n", "mail-stats: the refused domain counts exactly one rejected")
local rec, sent = ms.stdout:match("note: example%.test%s+(%d+)%s+(%d+)")
t.ok(tonumber(rec) and tonumber(rec) >= 1, "mail-stats: example.test received at least our message (" .. tostring(rec) .. ")")
t.ok(tonumber(sent) and tonumber(sent) >= 1, "mail-stats: example.test sent at least our message (" .. tostring(sent) .. ")")
t.like(ms.stdout, "total%s+%d+", "mail-stats: a total line")
local js = rb { "run", "mail-stats", "--since", "10m", "--format", "json" }
local verdict
for l in js.stdout:gmatch("[^\n]+") do
  local ev = require("runbook.json").decode(l)
  if type(ev) == "table" and ev.event == "verdict" then verdict = ev end
end
t.ok(verdict and verdict.message and verdict.message:find("rejected"), "mail-stats --format json: the verdict carries the counts")

-- ---------------------------------------------------------------- follow
local fmsg = ("<rb-follow.%s@outside.test>"):format(tag)
local t0 = lab.now()
local proc = exec.spawn({ lab.RB, "run", "follow", "--addr", env.LAB_USER, "--duration", "12s", "-i", lab.INV },
  { timeout = 120, cwd = lab.ROOT, env = { NO_COLOR = "1", RUNBOOK_INVENTORY = "", RUNBOOK_PATH = lab.ROOT .. "/runbooks" } })
-- send once follow says it is following (the condition), not after a fixed time
local chunks = {}
local following = false
while not following do
  local c = proc:read()
  if not c then break end
  chunks[#chunks + 1] = c
  following = table.concat(chunks):find("following " .. env.LAB_USER .. " in ", 1, true) ~= nil
end
t.ok(following, "follow: says it is following before anything is sent")
local fq = send(env.LAB_USER, fmsg)
t.ok(fq ~= nil, "follow: a message sent while following was accepted (" .. tostring(fq) .. ")")
while true do
  local c = proc:read()
  if not c then break end
  chunks[#chunks + 1] = c
end
local fst = proc:close()
local fout = table.concat(chunks)
local took = lab.now() - t0
t.is(type(fst) == "table" and fst.status, 0, "follow: ends by itself with exit 0")
-- it stops by itself (exit 0 above; the spawn timeout of 120 s would kill it otherwise)
t.ok(took >= 11.5 and took < 100, ("follow: ran for its --duration (12 s) and stopped (%.1f s)"):format(took))
t.like(fout, "ec2/postfix %d%d:%d%d:%d%d  .*" .. esc(fq or "NONE") .. ": client=", "follow: shows the MX's first line of the queue file (learned from its id)")
t.like(fout, "ec2/postfix .*" .. esc(fq or "NONE") .. ": to=<" .. esc(env.LAB_USER) .. ">.*status=sent", "follow: shows the MX's delivery line")
t.like(fout, "dell/dovecot .*msgid=" .. esc(fmsg) .. ": saved mail to INBOX", "follow: shows Dovecot saving it")
t.like(fout, "VERDICT: HEALTHY", "follow: reports how much it saw")
t.unlike(fout, "rb%-trace%." .. tag, "follow: shows nothing from before it started")

-- ---------------------------------------------------------------- queue-report on the lab as it is
local qr = rb { "run", "queue-report" }
t.ok(qr.status == 0 or qr.status == 1, "queue-report: runs on both Postfix services")
t.like(qr.stdout, "▶ ec2/postfix.*▶ dell/postfix", "queue-report: reads the MX's and the mail server's queue")
t.is(rb({ "run", "queue-report", "--service", "ec2/postfix; id" }).status, 2, "queue-report: a hostile --service is a usage error")

t.done()
