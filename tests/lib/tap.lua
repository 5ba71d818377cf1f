-- tap.lua: a tiny TAP producer for Lua tests run through `runbook lua` under prove.
-- t.plan(n) | t.ok(v, name) | t.is(got, want, name) | t.isnt(got, bad, name)
-- t.like(str, lua_pattern, name) | t.unlike(str, pattern, name) | t.diag(msg) | t.done()
-- t.done() prints the plan when none was given and exits non-zero if anything failed.
local M = { n = 0, failed = 0, planned = nil }

local function out(s) io.stdout:write(s, "\n"); io.stdout:flush() end

-- What explains a failure (the "not ok" line and every diag up to the next test) also goes to
-- stderr, which prove shows without -v, and is appended to RUNBOOK_TEST_FAILLOG when set (make
-- check prints that file last, so CI's tail says why, not only which test failed).
local faillog = os.getenv("RUNBOOK_TEST_FAILLOG")
local failing = false
local function explain(s)
  io.stderr:write(s, "\n"); io.stderr:flush()
  if faillog and faillog ~= "" then
    local f = io.open(faillog, "a")
    if f then f:write(s, "\n"); f:close() end
  end
end

function M.plan(n) M.planned = n; out("1.." .. n) end

function M.diag(msg)
  for line in (tostring(msg) .. "\n"):gmatch("(.-)\n") do
    out("# " .. line)
    if failing then explain("# " .. line) end
  end
end

function M.ok(v, name)
  M.n = M.n + 1
  if v then failing = false; out(("ok %d - %s"):format(M.n, name or ""))
  else
    M.failed = M.failed + 1
    failing = true
    out(("not ok %d - %s"):format(M.n, name or ""))
    explain(("%s: not ok %d - %s"):format(arg and arg[0] or "?", M.n, name or ""))
    -- the first caller outside this file (t.is -> t.ok, or t.ok straight from the test)
    local info
    for level = 2, 6 do
      local i = debug.getinfo(level, "Sl")
      if not i then break end
      if i.currentline > 0 and not i.short_src:find("tap%.lua$") then info = i; break end
    end
    if info then M.diag(("  at %s:%d"):format(info.short_src, info.currentline)) end
  end
  return v and true or false
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

function M.is(got, want, name)
  local ok = M.ok(got == want, name)
  if not ok then M.diag("     got: " .. show(got) .. "\nexpected: " .. show(want)) end
  return ok
end

function M.isnt(got, bad, name)
  local ok = M.ok(got ~= bad, name)
  if not ok then M.diag("     got: " .. show(got) .. "\n  wanted anything else") end
  return ok
end

function M.like(s, pat, name)
  local ok = M.ok(type(s) == "string" and s:find(pat) ~= nil, name)
  if not ok then M.diag("     got: " .. show(s) .. "\n    like: " .. pat) end
  return ok
end

function M.unlike(s, pat, name)
  local ok = M.ok(type(s) == "string" and s:find(pat) == nil, name)
  if not ok then M.diag("     got: " .. show(s) .. "\n  unlike: " .. pat) end
  return ok
end

function M.done()
  if not M.planned then out("1.." .. M.n) end
  if M.failed > 0 or (M.planned and M.planned ~= M.n) then os.exit(1) end
  os.exit(0)
end

return M
