-- docker_lab.t: prim/docker.lua against the mail lab (tests/lab): dell's compose services
-- through the Engine API on its socket, ec2's Postfix container over SSH; the SSH path and the
-- API path must agree about the same container. Read-only: the lab is shared, restarts are
-- tested on private daemons (docker_prim.t, docker_ssh.t).
local t = require "tap"
local docker = require "runbook.docker"
local context = require "runbook.context"

-- reads only: the shared lab test lock (no fault test may stop a container under it)
local E = require("rblab").locked("shared", "docker lab test")

local dir = ("/tmp/runbook-test-docker-%d"):format(require("runbook.core").getpid())
os.execute("mkdir -p " .. dir)
local inv = dir .. "/inventory.yaml"
local f = assert(io.open(inv, "w"))
f:write(([[
defaults: { timeout: 20s, connect_timeout: 5s }
hosts:
  ec2:
    transport: ssh
    address: %s
    port: %s
    user: %s
    key: %s
    known_hosts: %s
    docker: { socket: %s }
    services:
      postfix: { container: %s, kind: postfix }
  dell:
    transport: local
    docker: { socket: %s }
    services:
      postfix: { compose: { project: %s, service: postfix }, kind: postfix }
      dovecot: { compose: { project: %s, service: dovecot }, kind: dovecot }
      mariadb: { compose: { project: %s, service: mariadb } }
]]):format(E.LAB_EC2_ADDR, E.LAB_EC2_SSH_PORT, E.LAB_EC2_SSH_USER, E.LAB_SSH_KEY, E.LAB_SSH_KNOWN_HOSTS,
           E.LAB_EC2_DOCKER_SOCK, E.LAB_EC2_POSTFIX_CONTAINER, E.LAB_DELL_DOCKER_SOCK,
           E.LAB_COMPOSE_PROJECT, E.LAB_COMPOSE_PROJECT, E.LAB_COMPOSE_PROJECT))
f:close()

local function main()
  local ctx = context.new { inventory = inv }
  local prim = require "runbook.prim.docker"
  t.is(prim.resolve(ctx, "dell/dovecot"), E.LAB_DELL_DOVECOT_CONTAINER, "dell/dovecot resolved through compose labels")
  t.is(prim.resolve(ctx, "dell/postfix"), E.LAB_DELL_POSTFIX_CONTAINER, "dell/postfix resolved")
  t.is(prim.resolve(ctx, "dell/mariadb"), E.LAB_DELL_MARIADB_CONTAINER, "dell/mariadb resolved")

  local db = ctx:container_state("dell/mariadb")
  t.ok(db and db.name == E.LAB_DELL_MARIADB_CONTAINER and db.labels["com.docker.compose.project"] == E.LAB_COMPOSE_PROJECT,
       "dell/mariadb state with its compose labels")
  t.ok(db and db.running, "dell/mariadb is running")

  -- ec2 over SSH (docker inspect on the server) agrees with the Engine API on the same daemon
  local viassh, m = ctx:container_state("ec2/postfix")
  local viaapi = docker.inspect { socket = E.LAB_EC2_DOCKER_SOCK, container = E.LAB_EC2_POSTFIX_CONTAINER }
  t.ok(viassh and viaapi and viassh.id == viaapi.id and viassh.started_at == viaapi.started_at
       and viassh.running == viaapi.running and viassh.status == viaapi.status,
       "ec2/postfix: SSH inspect and API inspect agree (" .. tostring(m) .. ")")

  -- the log is live (other tests send mail under the shared lock): the two reads are compared
  -- when the log did not move between them (same last line before and after), at most 20 tries
  local function via_ssh()
    local logs, lm = ctx:docker_logs("ec2/postfix", { tail = 40 })
    local lines = {}
    for rec in logs or function() end do lines[#lines + 1] = rec.ts .. " " .. rec.line end
    return lines, lm
  end
  local ssh_lines, api_lines, lm, moved
  for _ = 1, 20 do
    ssh_lines, lm = via_ssh()
    api_lines = {}
    local s = docker.logs { socket = E.LAB_EC2_DOCKER_SOCK, container = E.LAB_EC2_POSTFIX_CONTAINER, tail = 40 }
    for _, ts, _, line in s:lines() do api_lines[#api_lines + 1] = ts .. " " .. line end
    local again = via_ssh()
    moved = again[#again] ~= ssh_lines[#ssh_lines]
    if not moved then break end
    require("runbook.core").sleep(0.2)
  end
  t.ok(#ssh_lines > 0, ("ec2/postfix: %d log lines over SSH (%s)"):format(#ssh_lines, tostring(lm)))
  t.ok(not moved, "ec2/postfix: a moment when the log stood still between two reads")
  table.sort(ssh_lines)
  table.sort(api_lines)
  t.is(table.concat(ssh_lines, "\n"), table.concat(api_lines, "\n"), "the same 40 lines through SSH and through the API")

  local dv = ctx:docker_logs("dell/dovecot", { tail = 20, grep = function() return true end })
  t.ok(dv and dv.read > 0 and dv.read <= 20, "dell/dovecot: tail=20 through the API")
  local r1 = dv and dv()
  t.ok(r1 and r1.container == E.LAB_DELL_DOVECOT_CONTAINER and r1.host == "dell" and type(r1.time) == "number",
       "dell/dovecot records carry the compose container and times")
  ctx:close()
end

local ok, err = xpcall(main, debug.traceback)
os.execute("rm -rf " .. dir)
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
