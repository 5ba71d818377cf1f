-- gen-api-doc.lua FILE...: rewrites the generated API sections from lua/runbook/api.lua, through
-- runbook.doc (the code `runbook doc` uses): a Markdown file (README.md) between its
-- <!-- api:begin/end --> markers, a man page (*.1, src/runbook.1) between its .\" api:begin/end
-- markers. Run by `make doc`; tests/lua/doc.t fails while a file differs from what this writes.
local doc = require "runbook.doc"

local api, err = doc.load()
if not api then error(err, 0) end
local context = require "runbook.context"
local proxy = context.new {}:public()
local public = {}
for k, v in pairs(context.Ctx) do if type(v) == "function" and proxy[k] ~= nil then public[#public + 1] = k end end
for _, p in ipairs(doc.check(api, public)) do io.stderr:write("gen-api-doc: warning: ", p, "\n") end

local files = #arg > 0 and arg or { "README.md", "src/runbook.1" }
for _, path in ipairs(files) do
  local f = assert(io.open(path, "r"))
  local old = f:read("a")
  f:close()
  local new, serr
  if path:match("%.1$") then new, serr = doc.splice(old, doc.roff(api), doc.ROFF_BEGIN, doc.ROFF_END)
  else new, serr = doc.splice(old, doc.markdown(api)) end
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
end
