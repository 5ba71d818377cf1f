-- host_lab.t: runbook.prim.host against the lab: ec2 over SSH (its sshd, its dockerd, the
-- mailserver-postfix container) and dell as the local host (compose services resolved by label).
-- Holds the lab's test lock shared: reads only.
local t = require "tap"
local fix = require "sshfix"
local env = fix.lab_locked("shared")
local context = require "runbook.context"
local inventory = require "runbook.inventory"

local function lab_inventory(extra_services)
  local doc = {
    defaults = { timeout = 15, connect_timeout = 5 },
    hosts = {
      ec2 = { transport = "ssh", address = env.LAB_EC2_ADDR, port = tonumber(env.LAB_EC2_SSH_PORT),
              user = env.LAB_EC2_SSH_USER, key = env.LAB_SSH_KEY, known_hosts = env.LAB_SSH_KNOWN_HOSTS,
              docker = { socket = env.LAB_EC2_DOCKER_SOCK },
              services = { postfix = { container = env.LAB_EC2_POSTFIX_CONTAINER, kind = "postfix" } } },
      dell = { transport = "local", docker = { socket = env.LAB_DELL_DOCKER_SOCK },
               services = {
                 postfix = { compose = { project = env.LAB_COMPOSE_PROJECT, service = "postfix" }, kind = "postfix" },
                 dovecot = { compose = { project = env.LAB_COMPOSE_PROJECT, service = "dovecot" }, kind = "dovecot" },
               } },
    },
  }
  for k, v in pairs(extra_services or {}) do doc.hosts.ec2.services[k] = v end
  return assert(inventory.validate(doc))
end

local ctx = context.new { inventory = lab_inventory { ghost = { container = "no-such-container-rbtest" } } }
local host = require "runbook.prim.host"

local r, msg, code = ctx:ssh_exec("ec2", { "id", "-un" }, { read_only = true })
t.is(r and r.stdout, env.LAB_EC2_SSH_USER .. "\n", "ssh_exec on ec2 as the lab user: " .. tostring(msg))

r, msg = ctx:service_exec("ec2/postfix", { "postconf", "-h", "relay_domains" }, { read_only = true })
t.like(r and r.stdout, "example%.test", "service_exec in ec2's postfix container over ssh + docker exec: " .. tostring(msg))
local hostile = "a'b $(touch /tmp/rbtest-pwned) `x` ; | \n end"
r = ctx:service_exec("ec2/postfix", { "printf", "%s", hostile }, { read_only = true })
t.is(r and r.stdout, hostile, "hostile argument crosses ssh and docker exec as data")
t.ok(not fix.exists("/tmp/rbtest-pwned"), "... nothing executed")
r, msg, code = ctx:service_exec("ec2/ghost", { "true" }, { read_only = true })
t.is(code, "notfound", "a container that does not exist -> notfound: " .. tostring(msg))
r, msg, code = ctx:service_exec("ec2/postfix", { "postconf", "-e", "x = y" })
t.is(code, "dryrun", "service_exec without read_only is a write (dry run)")

t.is(host.container(ctx, "dell/dovecot"), env.LAB_DELL_DOVECOT_CONTAINER, "compose service resolved by its labels")
r, msg = ctx:service_exec("dell/dovecot", { "ls", "-d", "/var/mail/vmail" })
t.is(r and r.stdout, "/var/mail/vmail\n", "service_exec in a compose container on the local host: " .. tostring(msg))

local d = ctx:df("dell/dovecot", env.LAB_VMAIL_CONTAINER_DIR)
t.ok(d and d.size_kb > 40000 and d.size_kb < 80000, ("df of the 64 MiB vmail volume in the container: %s KiB"):format(d and d.size_kb))
local dh = ctx:df("dell", env.LAB_VMAIL_DIR)
t.ok(dh and d and dh.size_kb == d.size_kb, "the same volume seen from the host")
local st = ctx:stat("dell/dovecot", env.LAB_VMAIL_CONTAINER_DIR)
t.ok(st and st.type == "directory" and st.mode:match("^%d%d%d%d$"), ("stat in a container: %s %s:%s"):format(
  st and st.mode, st and st.owner, st and st.group))
d = ctx:df("ec2/postfix", "/var/spool/postfix")
t.ok(d and d.size_kb > 0 and d.avail_kb >= 0, "df in the ec2 container over ssh")

r, msg = ctx:tcp_check("ec2", env.LAB_DELL_ADDR, tonumber(env.LAB_DELL_LMTP_PORT))
t.ok(r and (r.via == "direct-tcpip" or r.via == "exec"), ("tcp_check ec2 -> dell LMTP from ec2 (via %s): %s"):format(r and r.via, msg))
r, msg = ctx:tcp_check("dell", env.LAB_EC2_ADDR, tonumber(env.LAB_EC2_SMTP_PORT))
t.ok(r, "tcp_check dell -> ec2 SMTP from the local host: " .. tostring(msg))
r, msg, code = ctx:tcp_check("ec2", env.LAB_DELL_ADDR, 9)
t.is(code, "refused", "tcp_check ec2 -> dell:9 refused")

local lines, lmsg = ctx:exec_stream("ec2", { "docker", "-H", "unix://" .. env.LAB_EC2_DOCKER_SOCK, "logs", "--tail", "5",
  env.LAB_EC2_POSTFIX_CONTAINER }, { read_only = true })
local n = 0
if lines then for _ in lines do n = n + 1 end end
local res = lines and lines:close() or {}
t.ok(lines and res.status == 0, "exec_stream docker logs over ssh: " .. tostring(lmsg or res.error))
t.ok(n <= 5, ("... at most the 5 requested stdout lines (%d)"):format(n))
ctx:close()
t.done()
