-- runbook.prim.file: files on the machine runbook runs on.
--   ctx:read_file(path [, max]) -> content | nil, msg, code          (read)
--   ctx:file_stat(path) -> {user, group, uid, gid, perms, type, size} | nil, msg, code  (read)
--   ctx:df_local(path) -> {size_kb, used_kb, avail_kb, use_pct}      (read)
--   ctx:write_file(path, content [, mode]) -> true | nil, msg, code   (WRITE: atomic replace)
-- Depends on: runbook.exec, runbook.call.
local exec = require "runbook.exec"
local call = require "runbook.call"

local M = {}

local function check_path(path, fname)
  if type(path) ~= "string" or path == "" or path:find("%z") then
    error(("bad argument #1 to '%s' (path expected)"):format(fname), 3)
  end
end

function M.install(Ctx)
  function Ctx:read_file(path, max)
    check_path(path, "read_file")
    return call(self, {
      family = "file", op = "read", host = "local", summary_args = { path },
      fn = function() return exec.readfile(path, max) end,
      summarize = function(s) return ("%d bytes"):format(#s) end,
    })
  end

  function Ctx:file_stat(path)
    check_path(path, "file_stat")
    return call(self, {
      family = "file", op = "stat", host = "local", summary_args = { path },
      fn = function() return exec.stat(path) end,
      summarize = function(st) return ("%s %s:%s %s"):format(st.type, st.user or st.uid, st.group or st.gid, st.perms) end,
    })
  end

  function Ctx:df_local(path)
    check_path(path, "df_local")
    return call(self, {
      family = "file", op = "df", host = "local", summary_args = { path },
      fn = function() return exec.statvfs(path) end,
      summarize = function(v) return ("%d%% used, %d KiB free"):format(v.use_pct, v.avail_kb) end,
    })
  end

  function Ctx:write_file(path, content, mode)
    check_path(path, "write_file")
    if type(content) ~= "string" then error("bad argument #2 to 'write_file' (string expected)", 2) end
    mode = mode or tonumber("644", 8)
    return call(self, {
      family = "file", op = "write", host = "local", summary_args = { path },
      target = path,
      detail = ("write %d bytes to %s (mode %04o, atomic replace)"):format(#content, path, mode),
      before = function()
        local cur, _, code = exec.readfile(path, 1024 * 1024)
        if cur == nil and code == "notfound" then return "(no file)" end
        return cur
      end,
      after = content,
      verify = function() return exec.readfile(path, 1024 * 1024) end,
      fn = function() return exec.writefile(path, content, mode) end,
    })
  end
end

return M
