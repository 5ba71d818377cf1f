-- runbook.gate: the dry-run gate. The ONE place where every primitive operation is classified
-- as a read or a write, and where writes are journalled.
--
-- Reads always run (a runbook must still be able to decide what to do in a dry run). A write
-- without --apply does nothing and leaves a "would" record; with --apply it runs, is re-read and
-- is appended to the audit journal (JSON Lines) named in the inventory.
-- Depends on: runbook.core (time, user, hostname), runbook.json.
local M = {}

-- family.op -> "read" | "write" | "exec" ("exec": a write unless the call declares read_only).
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
  ["docker.state"] = "read", ["docker.resolve"] = "read",
  ["docker.restart"] = "write", ["docker.start"] = "write", ["docker.stop"] = "write",
  -- network and mail protocols
  ["dns.query"] = "read", ["net.tcp_check"] = "read",
  ["smtp.probe"] = "read", ["smtp.send"] = "write",
}

-- classify(family, op, read_only) -> "read" | "write"; raises for an unclassified operation,
-- so a new primitive cannot exist until it is classified here.
function M.classify(family, op, read_only)
  local key = family .. "." .. op
  local class = M.classes[key]
  if class == nil then
    error(("primitive operation '%s' is not classified in runbook.gate (lua/runbook/gate.lua)"):format(key), 3)
  end
  if class == "exec" then return read_only and "read" or "write" end
  return class
end

-- audit(path, record, json) appends one JSON line to the journal; returns true | nil, msg, code.
-- The journal is created 0600; each line is written with one write(2) in append mode.
function M.audit(path, record, json)
  if not path then return nil, "no audit journal configured (inventory audit.journal)", "io" end
  local line = json.encode(record) .. "\n"
  local exec = require "runbook.exec"
  return exec.append(path, line, tonumber("600", 8))
end

return M
