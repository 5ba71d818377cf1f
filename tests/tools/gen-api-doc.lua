-- gen-api-doc.lua [README]: rewrites the README's API section (between the api:begin and
-- api:end markers) from lua/runbook/api.lua, through runbook.doc, the code `runbook doc` uses.
-- Run by `make doc` as `runbook lua tests/tools/gen-api-doc.lua README.md`; tests/lua/doc.t
-- fails while the README differs from what this writes. Prints whether anything changed.
local doc = require "runbook.doc"

local path = arg[1] or "README.md"
local api, err = doc.load()
if not api then error(err, 0) end
local problems = doc.check(api, (function()
  local context = require "runbook.context"
  local proxy = context.new {}:public()
  local names = {}
  for k, v in pairs(context.Ctx) do if type(v) == "function" and proxy[k] ~= nil then names[#names + 1] = k end end
  return names
end)())
for _, p in ipairs(problems) do io.stderr:write("gen-api-doc: warning: ", p, "\n") end
local f = assert(io.open(path, "r"))
local old = f:read("a")
f:close()
local new, serr = doc.splice(old, doc.markdown(api))
if not new then error(path .. ": " .. serr, 0) end
if new == old then
  io.stdout:write(path, ": API section up to date\n")
else
  local tmp = path .. ".tmp"
  f = assert(io.open(tmp, "w"))
  f:write(new)
  f:close()
  assert(os.rename(tmp, path))
  io.stdout:write(path, ": API section rewritten from ", api.path, "\n")
end
