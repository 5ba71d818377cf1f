-- runbook.gate: the dry-run gate. The ONE place where every primitive operation is classified
-- as a read or a write, and where writes are journalled.
--
-- Reads always run (a runbook must still be able to decide what to do in a dry run). A write
-- without --apply does nothing and leaves a "would" record; with --apply it runs, is re-read and
-- is journalled (JSON Lines, the file named in the inventory) in two lines: the intent before the
-- change (no journal, no change) and the outcome after it.
-- Depends on: runbook.core (time, user, hostname), runbook.json.
local M = {}

-- family.op -> "read" | "write" | "exec" ("exec": a write unless its argv is in M.readonly).
M.classes = {
  -- local host
  ["exec.run"] = "exec", ["exec.stream"] = "exec",
  ["file.read"] = "read", ["file.stat"] = "read", ["file.list"] = "read", ["file.df"] = "read",
  ["file.write"] = "write", ["file.chown"] = "write", ["file.chmod"] = "write",
  -- any host (local or ssh), inside or outside a container
  ["ssh.connect"] = "read", ["ssh.exec"] = "exec", ["ssh.stream"] = "exec", ["ssh.tcp_check"] = "read",
  ["host.exec"] = "exec", ["host.stream"] = "exec", ["host.df"] = "read", ["host.stat"] = "read",
  ["host.tcp_check"] = "read", ["host.chown"] = "write", ["host.chmod"] = "write",
  ["service.exec"] = "exec", ["service.stream"] = "exec", ["service.resolve"] = "read",
  -- postfix
  ["postconf.get"] = "read", ["postconf.list"] = "read", ["postconf.set"] = "write",
  ["postfix.reload"] = "write",
  ["postqueue.list"] = "read", ["postqueue.flush"] = "write", ["postqueue.flush_all"] = "write",
  ["postsuper.delete"] = "write", ["postsuper.requeue"] = "write",
  -- databases
  ["sql.connect"] = "read", ["sql.query"] = "read", ["sql.write"] = "write",
  -- http (op = lower-case method)
  ["http.get"] = "read", ["http.head"] = "read", ["http.options"] = "read",
  ["http.post"] = "write", ["http.put"] = "write", ["http.patch"] = "write", ["http.delete"] = "write",
  -- docker
  ["docker.logs"] = "read", ["docker.inspect"] = "read", ["docker.find"] = "read",
  ["docker.state"] = "read", ["docker.resolve"] = "read", ["docker.connect"] = "read",
  ["docker.restart"] = "write", ["docker.start"] = "write", ["docker.stop"] = "write",
  -- network and mail protocols
  ["dns.query"] = "read", ["net.tcp_check"] = "read",
  ["smtp.probe"] = "read", ["smtp.send"] = "write",
}

-- Commands an exec may run as a READ, by program name (argv[1], path stripped). true: any
-- arguments; a function(argv) -> true when these arguments only read. Anything else, including
-- every shell, interpreter and wrapper (sh, env, sudo, timeout, xargs), is a write. The runbook
-- has no say: an exec's own read_only option is ignored (it was how a runbook could write during
-- a dry run). Add a command here only when no argument can make it change anything.
local function none_of(bad)          -- read-only unless an argument is (or starts with) one of bad
  return function(argv)
    for i = 2, #argv do
      local a = argv[i]
      for _, b in ipairs(bad) do
        if a == b or (b:sub(-1) == "=" and a:sub(1, #b) == b) then return false end
      end
    end
    return true
  end
end

-- doveadm: only the sub-commands that read, named right after the global options -D, -v and
-- -f FORMATTER (any other global option, -o and -c included, is a write). Everything else
-- (auth cache flush, move, expunge, flags, mailbox create, quota recalc, ...) is a write.
local DOVEADM_READS = {
  { "who" }, { "log", "errors" }, { "user" }, { "auth", "lookup" }, { "quota", "get" },
  { "search" }, { "fetch" }, { "mailbox", "list" }, { "mailbox", "status" },
}
-- `doveadm auth lookup USER` prints every passdb field, the password hash among them: a read only
-- with `-f FIELD` naming one field that is not a password (-a and -x may come too).
local function auth_lookup_is_read(argv, i)
  local field
  while argv[i] and argv[i]:sub(1, 1) == "-" do
    local a, v = argv[i], argv[i + 1]
    if a == "-f" then field = v elseif a ~= "-a" and a ~= "-x" then return false end
    if v == nil then return false end
    i = i + 2
  end
  return field ~= nil and not field:lower():find("pass", 1, true) and argv[i] ~= nil
end
local function doveadm_is_read(argv)
  local i = 2
  while argv[i] and argv[i]:sub(1, 1) == "-" do
    local a = argv[i]
    if a == "-f" then i = i + 2
    elseif a == "-D" or a == "-v" or a == "-Dv" or a == "-vD" then i = i + 1
    else return false end
  end
  for _, words in ipairs(DOVEADM_READS) do
    local match = true
    for k, w in ipairs(words) do
      if argv[i + k - 1] ~= w then match = false break end
    end
    if match then
      if words[1] == "auth" then return auth_lookup_is_read(argv, i + 2) end
      return true
    end
  end
  return false
end
local POSTMAP_READ_FLAGS = { ["-f"] = true, ["-N"] = true, ["-n"] = true, ["-v"] = true,
                             ["-b"] = true, ["-h"] = true, ["-m"] = true }
local DOVECONF_READ_FLAGS = { ["-a"] = true, ["-d"] = true, ["-n"] = true, ["-N"] = true,
                              ["-S"] = true, ["-s"] = true, ["-h"] = true }

M.readonly = {
  ["true"] = true, ["false"] = true, echo = true, printf = true, sleep = true, seq = true,
  id = true, whoami = true, uname = true, pwd = true, test = true, ["["] = true,
  cat = true, head = true, wc = true, ls = true, stat = true, df = true, du = true,
  grep = true, egrep = true, fgrep = true, getent = true, nproc = true, uptime = true, printenv = true,
  tail = none_of { "--pid", "--pid=" },
  date = none_of { "-s", "--set", "--set=" },
  hostname = function(argv)          -- `hostname NAME` sets it: only flags are reads
    for i = 2, #argv do
      local a = argv[i]
      if a:sub(1, 1) ~= "-" or a == "-F" or a:sub(1, 6) == "--file" then return false end
    end
    return true
  end,
  -- find: its actions that write or run something
  find = none_of { "-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls" },
  -- postconf edits with -e -X -# and with -M/-F/-P name=value
  postconf = function(argv)
    for i = 2, #argv do
      local a = argv[i]
      if a:sub(1, 1) == "-" and a:find("[eX#]") then return false end
      if a:find("=", 1, true) then return false end
    end
    return true
  end,
  postqueue = function(argv)         -- -p and -j list; -f -s -i flush
    for i = 2, #argv do
      local a = argv[i]
      if a ~= "-p" and a ~= "-j" then return false end
    end
    return #argv >= 2
  end,
  mailq = true,
  -- docker: only the sub-commands that read, after global options (unknown options: a write)
  docker = function(argv)
    local with_value = { ["-H"] = true, ["--host"] = true, ["-c"] = true, ["--context"] = true,
                         ["--config"] = true, ["-l"] = true, ["--log-level"] = true }
    local i = 2
    while argv[i] and argv[i]:sub(1, 1) == "-" do
      local name = argv[i]:match("^(%-%-[%w-]+)=")
      if name and with_value[name] then i = i + 1
      elseif with_value[argv[i]] then i = i + 2
      else return false end
    end
    local sub = argv[i]
    return sub == "logs" or sub == "ps" or sub == "inspect" or sub == "version" or sub == "info"
  end,
  ss = none_of { "-K", "--kill", "-D", "--diag", "--diag=" },
  doveadm = function(argv) return doveadm_is_read(argv) end,
  -- postmap: only queries (-q KEY, -s dump); building, -d delete and -i incremental write
  postmap = function(argv)
    local query, i = false, 2
    while i <= #argv do
      local a = argv[i]
      if a == "-q" then query, i = true, i + 1          -- the key may itself start with "-"
      elseif a == "-s" then query = true
      elseif a == "-c" then i = i + 1
      elseif a:sub(1, 1) == "-" and not POSTMAP_READ_FLAGS[a] then return false
      end
      i = i + 1
    end
    return query
  end,
  -- doveconf: dumps settings; -P (passwords), -x (file contents), -c, -e and unknown options:
  -- a write (they show secrets or run something)
  doveconf = function(argv)
    local i = 2
    while i <= #argv do
      local a = argv[i]
      if a == "-f" or a == "-m" then i = i + 1
      elseif a:sub(1, 1) == "-" and not DOVECONF_READ_FLAGS[a] then return false
      end
      i = i + 1
    end
    return true
  end,
}

-- argv_is_read(argv) -> true when the gate's table lists argv as read-only.
function M.argv_is_read(argv)
  if type(argv) ~= "table" or type(argv[1]) ~= "string" then return false end
  for i = 1, #argv do if type(argv[i]) ~= "string" then return false end end
  local rule = M.readonly[argv[1]:match("[^/]*$")]
  if rule == true then return true end
  if type(rule) == "function" then return rule(argv) == true end
  return false
end

-- classify(family, op, argv) -> "read" | "write"; raises for an unclassified operation,
-- so a new primitive cannot exist until it is classified here. argv: for exec-class ops, the
-- exact argument vector that will run (the wrapper's snapshot); nothing else decides.
function M.classify(family, op, argv)
  local key = family .. "." .. op
  local class = M.classes[key]
  if class == nil then
    error(("primitive operation '%s' is not classified in runbook.gate (lua/runbook/gate.lua)"):format(key), 3)
  end
  if class == "exec" then return M.argv_is_read(argv) and "read" or "write" end
  return class
end

-- audit(path, record, json) appends one JSON line to the journal; returns true | nil, msg, code.
-- The journal is created 0600; an existing one must be a regular file (not a symlink) owned by
-- the running user and closed to group and others (runbook.exec.append checks on the opened
-- descriptor). Each line is one write(2) in append mode.
function M.audit(path, record, json)
  if not path then return nil, "no audit journal configured (inventory audit.journal)", "io" end
  local line = json.encode(record) .. "\n"
  local exec = require "runbook.exec"
  local ok, msg, code = exec.append(path, line, tonumber("600", 8))
  if not ok then return nil, "audit journal " .. tostring(msg), code end
  return true
end

return M
