-- runbook.cli: the command line (placeholder until the full CLI lands: `lua` only).
local M = {}

function M.main(argv)
  local cmd = argv[1]
  if cmd == "lua" then
    local file = argv[2]
    if not file then io.stderr:write("usage: runbook lua FILE [ARG...]\n"); return 2 end
    local a = { [0] = file }
    for i = 3, #argv do a[#a + 1] = argv[i] end
    _G.arg = a
    local chunk, err = loadfile(file, "t")
    if not chunk then io.stderr:write("runbook: ", err, "\n"); return 2 end
    local ok, e = xpcall(chunk, debug.traceback, table.unpack(a))
    if not ok then io.stderr:write("runbook: ", tostring(e), "\n"); return 3 end
    return 0
  end
  io.stderr:write("usage: runbook lua FILE\n")
  return 2
end

return M
