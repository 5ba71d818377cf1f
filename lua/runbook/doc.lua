-- runbook.doc: `runbook doc` and the API sections of the README and the man page, all read from
-- the one description of the runbook API, lua/runbook/api.lua (LuaLS definitions, never run).
--
--   doc.parse(text) -> api | nil, msg       api = { methods = {entry...}, by_name = {}, fields =
--       {{name, type, desc}...}, codes = {{name, meaning}...}, code_meaning = {}, aliases = {},
--       classes = {Name = {name, fields = {{name, type, desc}...}}} }
--       entry = { name, summary, body = {lines}, params = {{name, type, optional, desc}...},
--                 returns = {{type, name, desc}...}, codes = {names...}, example = text|nil }
--   doc.load() -> api | nil, msg            the installed api.lua, found on package.path
--   doc.check(api, public) -> {problems}    public: list of the method names a real context
--       exposes. Every public method needs an entry, every entry a public method, every code a
--       line in ErrCode (and every ErrCode line a method that returns it), every entry a summary
--       and an example, every type name a class or alias of api.lua.
--   doc.signature(entry) -> "ctx:name(a, b [, c]) -> result | nil, message, code"
--   doc.markdown(api) -> the README's API section (between <!-- api:begin --> and <!-- api:end -->)
--   doc.roff(api) -> the man page's (src/runbook.1, between .\" api:begin and .\" api:end)
--   doc.main(argv) -> exit status for `runbook doc [METHOD | TYPE | codes | --markdown]`
-- Depends on: nothing but the standard library (reads api.lua as text).
local M = {}

M.BEGIN = "<!-- api:begin: generated from lua/runbook/api.lua by `make doc`; edit that file, not this table -->"
M.END = "<!-- api:end -->"

-- ---------------------------------------------------------------- parsing

-- read_type(s) -> type, rest: a LuaLS type at the start of s. Spaces count inside brackets and
-- right after a ':' (fun(x: T): R), not elsewhere.
local function read_type(s)
  local depth, i, n = 0, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "(" or c == "{" or c == "[" or c == "<" then depth = depth + 1
    elseif c == ")" or c == "}" or c == "]" or c == ">" then depth = depth - 1
    elseif c == '"' then
      local e = s:find('"', i + 1, true)
      i = e or n
    elseif c:match("%s") and depth == 0 then
      if not s:sub(1, i - 1):match(":$") then break end
    end
    i = i + 1
  end
  return s:sub(1, i - 1), (s:sub(i):gsub("^%s+", ""))
end
M.read_type = read_type

-- union(t) -> the members of a type separated by '|' at the top level
local function union(t)
  local out, depth, start = {}, 0, 1
  for i = 1, #t do
    local c = t:sub(i, i)
    if c == "(" or c == "{" or c == "[" or c == "<" then depth = depth + 1
    elseif c == ")" or c == "}" or c == "]" or c == ">" then depth = depth - 1
    elseif c == "|" and depth == 0 then
      out[#out + 1] = t:sub(start, i - 1)
      start = i + 1
    end
  end
  out[#out + 1] = t:sub(start)
  return out
end

local function text_of(line) return line:sub(4) end

local function method_entry(name, arglist, block)
  local e = { name = name, params = {}, returns = {}, body = {}, arglist = {} }
  for a in arglist:gmatch("[^,%s]+") do e.arglist[#e.arglist + 1] = a end
  local desc = {}
  for _, l in ipairs(block) do
    local tag, rest = l:match("^%-%-%-@(%w+)%s*(.*)$")
    if tag == "param" then
      local pname, prest = rest:match("^(%S+)%s+(.*)$")
      if not pname then return nil, ("%s: bad @param line: %s"):format(name, l) end
      local optional = pname:sub(-1) == "?"
      if optional then pname = pname:sub(1, -2) end
      local ptype, pdesc = read_type(prest)
      e.params[#e.params + 1] = { name = pname, type = ptype, optional = optional, desc = pdesc }
    elseif tag == "return" then
      local rtype, rrest = read_type(rest)
      local rname, rdesc = rrest:match("^(%S+)%s*(.*)$")
      e.returns[#e.returns + 1] = { type = rtype, name = rname or "", desc = rdesc or "" }
    elseif tag then
      return nil, ("%s: unexpected @%s in a method's entry"):format(name, tag)
    else
      desc[#desc + 1] = text_of(l)
    end
  end
  e.summary = desc[1] or ""
  e.summary_continues = desc[2] ~= nil and desc[2] ~= ""
  local i = 2
  while desc[i] == "" do i = i + 1 end
  local in_example = false
  local example = {}
  for j = i, #desc do
    local l = desc[j]
    if l == "Example:" then
      in_example = true
    elseif in_example then
      if not l:match("^```") then example[#example + 1] = l end
    else
      e.body[#e.body + 1] = l
    end
  end
  while e.body[#e.body] == "" do e.body[#e.body] = nil end
  if #example > 0 then e.example = table.concat(example, "\n") end
  return e
end

function M.parse(text)
  local api = { methods = {}, by_name = {}, fields = {}, codes = {}, code_meaning = {}, aliases = {},
                classes = {} }
  local block = {}
  -- a class other than Ctx: `---@class Name` and its `---@field name type desc` lines
  local function flush_class()
    local cname
    for _, l in ipairs(block) do
      local c = l:match("^%-%-%-@class%s+([%w_]+)")
      if c then
        cname = c
        api.classes[c] = api.classes[c] or { name = c, fields = {} }
      elseif cname then
        local rest = l:match("^%-%-%-@field%s+(.*)$")
        if rest then
          local fname, frest = rest:match("^(%S+)%s+(.*)$")
          if fname then
            local ftype, fdesc = read_type(frest)
            local list = api.classes[cname].fields
            list[#list + 1] = { name = fname, type = ftype, desc = fdesc }
          end
        end
      end
    end
  end
  -- an alias is one `---@alias Name type` line, or `---@alias Name` and `---| "x" # meaning` lines
  local function flush_alias()
    local name
    for _, l in ipairs(block) do
      local head = l:match("^%-%-%-@alias%s+(.*)$")
      if head then
        local def
        name, def = head:match("^(%S+)%s*(.*)$")
        api.aliases[name] = def ~= "" and union(def) or {}
      elseif name then
        local v, meaning = l:match('^%-%-%-|%s*(%S+)%s*#?%s*(.*)$')
        if v then
          local members = api.aliases[name]
          members[#members + 1] = v
          if name == "ErrCode" then
            local code = v:match('^"(.*)"$')
            api.codes[#api.codes + 1] = { name = code, meaning = meaning }
            api.code_meaning[code] = meaning
          end
        end
      end
    end
  end
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%-%-%-") then
      block[#block + 1] = line
    else
      local name, args = line:match("^function Ctx:([%w_]+)%((.-)%)%s*end%s*$")
      if name then
        if api.by_name[name] then return nil, "api: method " .. name .. " is documented twice" end
        local e, err = method_entry(name, args, block)
        if not e then return nil, "api: " .. err end
        api.methods[#api.methods + 1] = e
        api.by_name[name] = e
      elseif line:match("^local Ctx = {}") then
        for _, l in ipairs(block) do
          local rest = l:match("^%-%-%-@field%s+(.*)$")
          if rest then
            local fname, frest = rest:match("^(%S+)%s+(.*)$")
            local ftype, fdesc = read_type(frest)
            api.fields[#api.fields + 1] = { name = fname, type = ftype, desc = fdesc }
          end
        end
      else
        flush_alias()
        flush_class()
      end
      block = {}
    end
  end
  if #api.codes == 0 then return nil, "api: no ErrCode alias" end
  -- every method's codes: the literals of its `code` return, aliases expanded, in ErrCode order
  local function expand(t, out, seen, depth)
    for _, m in ipairs(union(t)) do
      local lit = m:match('^"(.*)"$')
      if lit then out[lit] = true
      elseif m ~= "nil" then
        local a = api.aliases[m]
        if not a or depth > 8 then return nil, "unknown type " .. m .. " in a code return" end
        if seen[m] then return nil, "alias cycle at " .. m end
        seen[m] = true
        local ok, err = expand(table.concat(a, "|"), out, seen, depth + 1)
        if not ok then return nil, err end
        seen[m] = nil
      end
    end
    return true
  end
  for _, e in ipairs(api.methods) do
    e.codes, e.unknown_codes = {}, {}
    for _, r in ipairs(e.returns) do
      if r.name == "code" then
        local set = {}
        local ok, err = expand(r.type, set, {}, 0)
        if not ok then return nil, ("api: %s: %s"):format(e.name, err) end
        for _, c in ipairs(api.codes) do
          if set[c.name] then e.codes[#e.codes + 1] = c.name; set[c.name] = nil end
        end
        for c in pairs(set) do e.unknown_codes[#e.unknown_codes + 1] = c end
        table.sort(e.unknown_codes)
      end
    end
  end
  table.sort(api.methods, function(a, b) return a.name < b.name end)
  return api
end

function M.path()
  return package.searchpath("runbook.api", package.path)
end

function M.load()
  local path, why = M.path()
  if not path then
    return nil, "the API description (runbook/api.lua) is not installed: " .. (why:gsub("^%s+", ""):gsub("%s+", " "))
  end
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local api, perr = M.parse(text)
  if not api then return nil, path .. ": " .. perr end
  api.path = path
  return api
end

-- ---------------------------------------------------------------- checks

function M.check(api, public)
  local problems = {}
  local function add(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  local is_public = {}
  for _, n in ipairs(public) do
    is_public[n] = true
    if not api.by_name[n] then add("public ctx method %s has no entry in api.lua", n) end
  end
  local used = {}
  for _, e in ipairs(api.methods) do
    if not is_public[e.name] then add("api.lua documents ctx:%s, which no context exposes", e.name) end
    if e.summary == "" then add("ctx:%s has no summary line", e.name) end
    if e.summary_continues then
      add("ctx:%s: the summary runs onto a second line (one line, then a blank ---)", e.name)
    end
    if not e.example then add("ctx:%s has no example", e.name) end
    local documented = {}
    for _, p in ipairs(e.params) do documented[#documented + 1] = p.name end
    if table.concat(documented, ",") ~= table.concat(e.arglist, ",") then
      add("ctx:%s: @param names (%s) differ from its signature (%s)", e.name,
        table.concat(documented, ", "), table.concat(e.arglist, ", "))
    end
    for _, c in ipairs(e.unknown_codes) do add("ctx:%s returns code %q, which ErrCode does not list", e.name, c) end
    for _, c in ipairs(e.codes) do used[c] = true end
  end
  -- every type name an entry or a class uses is defined here (LuaLS: undefined-doc-name)
  local function names_in(t, out)
    t = t:gsub('"[^"]*"', "")
    for n in t:gmatch("[%a_][%w_]*") do
      if n:match("^%u") and n ~= "Ctx" then out[n] = true end
    end
    return out
  end
  local function check_type(where, t)
    for n in pairs(names_in(t, {})) do
      if not api.classes[n] and not api.aliases[n] then add("%s uses type %s, which api.lua does not define", where, n) end
    end
  end
  for _, e in ipairs(api.methods) do
    for _, p in ipairs(e.params) do check_type("ctx:" .. e.name, p.type) end
    for _, r in ipairs(e.returns) do check_type("ctx:" .. e.name, r.type) end
  end
  for cname, c in pairs(api.classes) do
    for _, f in ipairs(c.fields) do check_type("class " .. cname, f.type) end
  end
  for _, c in ipairs(api.codes) do
    if not used[c.name] then add("ErrCode %q is returned by no documented method", c.name) end
    if c.meaning == "" then add("ErrCode %q has no meaning", c.name) end
  end
  return problems
end

-- ---------------------------------------------------------------- rendering

local function is_failure_shape(e)
  for _, r in ipairs(e.returns) do if r.name == "code" then return true end end
  return false
end

function M.signature(e)
  local args, opt = {}, false
  for _, p in ipairs(e.params) do
    if p.optional then
      args[#args + 1] = (#args > 0 and " [, " or "[") .. p.name
      opt = true
    else
      args[#args + 1] = (#args > 0 and ", " or "") .. p.name
    end
  end
  local closing = ""
  if opt then for _, p in ipairs(e.params) do if p.optional then closing = closing .. "]" end end end
  local s = ("ctx:%s(%s%s)"):format(e.name, table.concat(args), closing)
  if #e.returns == 0 then return s end
  local ok, after, seen_code = {}, {}, false
  for _, r in ipairs(e.returns) do
    if r.name == "code" then seen_code = true
    elseif seen_code then after[#after + 1] = r.name
    elseif r.name ~= "message" then ok[#ok + 1] = r.name end
  end
  s = s .. " -> " .. table.concat(ok, ", ")
  if is_failure_shape(e) then
    s = s .. " | nil, message, code"
    if #after > 0 then s = s .. " [, " .. table.concat(after, ", ") .. "]" end
  end
  return s
end

local function pad(s, n) return s .. (" "):rep(math.max(n - #s, 1)) end

-- find(api, query) -> entry | field | "codes" | nil, suggestions
local function lev(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

function M.nearest(api, q, max)
  local scored = {}
  local names = {}
  for _, e in ipairs(api.methods) do names[#names + 1] = e.name end
  for _, f in ipairs(api.fields) do names[#names + 1] = f.name end
  for c in pairs(api.classes or {}) do names[#names + 1] = c end
  for _, n in ipairs(names) do
    local d = lev(q, n)
    if n:find(q, 1, true) or q:find(n, 1, true) then d = math.min(d, 2) end
    if d <= math.max(2, #q // 3) then scored[#scored + 1] = { n = n, d = d } end
  end
  table.sort(scored, function(a, b) return a.d < b.d or (a.d == b.d and a.n < b.n) end)
  local out = {}
  for i = 1, math.min(#scored, max or 3) do out[i] = scored[i].n end
  return out
end

function M.entry_text(api, e)
  local out = { M.signature(e), "", "  " .. e.summary }
  if #e.body > 0 then
    out[#out + 1] = ""
    for _, l in ipairs(e.body) do out[#out + 1] = l == "" and "" or ("  " .. l) end
  end
  if #e.params > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Parameters:"
    for _, p in ipairs(e.params) do
      out[#out + 1] = ("  %s%s%s"):format(pad(p.name .. (p.optional and "?" or ""), 10), p.type,
        p.desc ~= "" and ("  " .. p.desc) or "")
    end
  end
  if #e.returns > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Returns:"
    for _, r in ipairs(e.returns) do
      if r.name == "code" then
        out[#out + 1] = ("  %sone of the error codes below; nil on success"):format(pad("code", 10))
      else
        out[#out + 1] = ("  %s%s%s"):format(pad(r.name, 10), r.type, r.desc ~= "" and ("  " .. r.desc) or "")
      end
    end
  end
  for _, r in ipairs(e.returns) do
    local cname = r.type:match("^([%u][%w_]*)|nil$") or r.type:match("^([%u][%w_]*)$")
    local c = cname and api.classes[cname]
    if c and #c.fields > 0 then
      out[#out + 1] = ""
      out[#out + 1] = ("%s (%s) fields:"):format(r.name, cname)
      for _, f in ipairs(c.fields) do
        out[#out + 1] = ("  %s%s%s"):format(pad(f.name, 16), f.type, f.desc ~= "" and ("  " .. f.desc) or "")
      end
    end
  end
  if #e.codes > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Error codes (the third value when the first is nil):"
    for _, c in ipairs(e.codes) do out[#out + 1] = ("  %s%s"):format(pad(c, 12), api.code_meaning[c]) end
  end
  if e.example then
    out[#out + 1] = ""
    out[#out + 1] = "Example:"
    for l in (e.example .. "\n"):gmatch("(.-)\n") do out[#out + 1] = "  " .. l end
  end
  return table.concat(out, "\n") .. "\n"
end

function M.list_text(api)
  local out = { "The runbook API: what `run(ctx)` can use. `runbook doc METHOD` shows one method in full.",
                "", "Fields (read-only):" }
  for _, f in ipairs(api.fields) do out[#out + 1] = ("  %s%s"):format(pad("ctx." .. f.name, 20), f.desc) end
  out[#out + 1] = ""
  out[#out + 1] = "Methods (call as ctx:NAME(...)):"
  for _, e in ipairs(api.methods) do out[#out + 1] = ("  %s%s"):format(pad(e.name, 20), e.summary) end
  out[#out + 1] = ""
  local types = {}
  for c in pairs(api.classes) do types[#types + 1] = c end
  table.sort(types)
  out[#out + 1] = "Table types (runbook doc TYPE):"
  local line = " "
  for _, c in ipairs(types) do
    if #line + #c + 1 > 98 then out[#out + 1] = line; line = " " end
    line = line .. " " .. c
  end
  out[#out + 1] = line
  out[#out + 1] = ""
  out[#out + 1] = "Operational failures return nil, message, code; `runbook doc codes` lists the codes."
  return table.concat(out, "\n") .. "\n"
end

function M.codes_text(api)
  local out = { "Error codes: the third value of `nil, message, code` (runbooks branch on it, never on the message).", "" }
  for _, c in ipairs(api.codes) do out[#out + 1] = ("  %s%s"):format(pad(c.name, 12), c.meaning) end
  return table.concat(out, "\n") .. "\n"
end

local function md(s) return (s:gsub("|", "\\|")) end

local function code_list(codes)
  local t = {}
  for i, c in ipairs(codes) do t[i] = "`" .. c .. "`" end
  return table.concat(t, " ")
end

function M.markdown(api)
  local out = { M.BEGIN, "", "| field | what |", "|---|---|" }
  for _, f in ipairs(api.fields) do out[#out + 1] = ("| `ctx.%s` | %s |"):format(f.name, md(f.desc)) end
  out[#out + 1] = ""
  out[#out + 1] = "| method | what | codes |"
  out[#out + 1] = "|---|---|---|"
  for _, e in ipairs(api.methods) do
    out[#out + 1] = ("| `%s` | %s | %s |"):format(md(M.signature(e)), md(e.summary), code_list(e.codes))
  end
  out[#out + 1] = ""
  out[#out + 1] = "| code | meaning |"
  out[#out + 1] = "|---|---|"
  for _, c in ipairs(api.codes) do out[#out + 1] = ("| `%s` | %s |"):format(c.name, md(c.meaning)) end
  out[#out + 1] = ""
  out[#out + 1] = M.END
  return table.concat(out, "\n") .. "\n"
end

-- The man page's RUNBOOK API section (src/runbook.1), between its own markers.
M.ROFF_BEGIN = '.\\" api:begin: generated from lua/runbook/api.lua by make doc; edit that file, not this list'
M.ROFF_END = '.\\" api:end'

local function roff(s)
  s = s:gsub("\\", "\\e"):gsub("`", "")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end

function M.roff(api)
  local out = { M.ROFF_BEGIN, ".SS Fields" }
  for _, f in ipairs(api.fields) do
    out[#out + 1] = ".TP"
    out[#out + 1] = "\\fBctx." .. f.name .. "\\fR"
    out[#out + 1] = roff(f.desc)
  end
  out[#out + 1] = ".SS Methods"
  for _, e in ipairs(api.methods) do
    out[#out + 1] = ".TP"
    out[#out + 1] = "\\fB" .. roff(M.signature(e)) .. "\\fR"
    out[#out + 1] = roff(e.summary)
    if #e.codes > 0 then out[#out + 1] = ".br"; out[#out + 1] = "Codes: " .. table.concat(e.codes, ", ") .. "." end
  end
  out[#out + 1] = ".SS Error codes"
  for _, c in ipairs(api.codes) do
    out[#out + 1] = ".TP"
    out[#out + 1] = "\\fB" .. c.name .. "\\fR"
    out[#out + 1] = roff(c.meaning)
  end
  out[#out + 1] = M.ROFF_END
  return table.concat(out, "\n") .. "\n"
end

-- splice(text, section [, begin, end]) -> text with the lines from the begin marker to the end
-- marker replaced by section (which carries the markers) | nil, msg. Default: the README's.
function M.splice(text, section, begin_mark, end_mark)
  begin_mark, end_mark = begin_mark or M.BEGIN, end_mark or M.END
  local a = text:find(begin_mark, 1, true)
  local b, b2 = text:find(end_mark, a or 1, true)
  if not a or not b then return nil, "no api:begin / api:end markers" end
  local tail = text:sub(b2 + 1):gsub("^\n", "")
  return text:sub(1, a - 1) .. section .. tail
end

-- ---------------------------------------------------------------- the command

local HELP = [[
Usage: runbook doc [METHOD | TYPE | codes | --markdown]

  runbook doc            every ctx field and method with a one-line summary
  runbook doc METHOD     one method in full: signature, parameters, returns (and the fields of
                         the tables it returns), error codes, example (step and ctx:step work)
  runbook doc TYPE       the fields of a table type the API names (SqlResult, ExecResult, ...)
  runbook doc codes      every error code and what it means
  runbook doc --markdown the README's API section (what `make doc` splices into README.md)

All of it is read from lua/runbook/api.lua, the LuaLS definition file editors use.
]]

function M.main(argv)
  local q = argv[2]
  if q == "--help" or q == "-h" then io.stdout:write(HELP); return 0 end
  if argv[3] then
    io.stderr:write("runbook: doc takes at most one METHOD\nTry 'runbook doc --help'.\n")
    return 2
  end
  local api, err = M.load()
  if not api then io.stderr:write("runbook: doc: ", err, "\n"); return 3 end
  if q == nil then io.stdout:write(M.list_text(api)); return 0 end
  if q == "--markdown" then io.stdout:write(M.markdown(api)); return 0 end
  if q == "codes" or q == "ErrCode" then io.stdout:write(M.codes_text(api)); return 0 end
  local name = q:gsub("^[Cc]tx[:.]", ""):gsub("%(.*$", "")
  local e = api.by_name[name]
  if e then io.stdout:write(M.entry_text(api, e)); return 0 end
  local c = api.classes[q]
  if c then
    local out = { ("%s (a table described in api.lua):"):format(c.name) }
    for _, f in ipairs(c.fields) do
      out[#out + 1] = ("  %s%s%s"):format(pad(f.name, 16), f.type, f.desc ~= "" and ("  " .. f.desc) or "")
    end
    io.stdout:write(table.concat(out, "\n"), "\n")
    return 0
  end
  for _, f in ipairs(api.fields) do
    if f.name == name then
      io.stdout:write(("ctx.%s: %s\n\n  %s\n"):format(f.name, f.type, f.desc))
      return 0
    end
  end
  local near = M.nearest(api, name)
  io.stderr:write(("runbook: doc: no ctx method, field or type %q%s\n"):format(q,
    #near > 0 and ("; did you mean: " .. table.concat(near, ", ") .. "?") or ""))
  io.stderr:write("Try 'runbook doc' for the list.\n")
  return 2
end

return M
