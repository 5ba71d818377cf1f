-- runbook.lint: `runbook check`'s static look at a runbook's source, after sandbox.load has
-- loaded it (syntax, declaration, the top level under the strict environment).
--
--   lint.tokens(text) -> list of { t = "name"|"kw"|"str"|"num"|"op"|"eof", v = text, line = n }
--   lint.requires(text) -> list of { name =, line = } for every literal require "x" / require("x")
--   lint.file(path, text, opts) -> list of { line =, message = }
--     opts.globals: set of the names the sandbox's environment holds
--     opts.ctx_has(name) -> true when the live context has that method or field
--     opts.causes: set of known cause codes (nil: cause codes are not checked)
--
-- What it finds, over the whole source (not only the code paths a run takes):
--   * a name that is neither a local in scope nor one of the sandbox's globals (read or write:
--     at run time the strict environment raises there);
--   * ctx:NAME( / ctx.NAME where the live context has no NAME;
--   * cause = "CODE" with a literal CODE that the cause list does not hold.
-- Scopes are tracked token by token (local, function parameters, for variables, blocks). It
-- errs on the side of silence: `local x = x` counts x as the new local, a repeat block's locals
-- stay visible after `until`. Depends on: nothing.
local M = {}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local OPS3 = { ["..."] = true }
local OPS2 = { [".."] = true, ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true,
               ["//"] = true, ["::"] = true, ["<<"] = true, [">>"] = true }

-- tokens(text) -> list; an unterminated string or comment ends the list (the loader has
-- already refused such a file: this never reports syntax).
function M.tokens(text)
  local toks, n, i, line, len = {}, 0, 1, 1, #text
  local function add(t, v, l) n = n + 1; toks[n] = { t = t, v = v, line = l } end
  local function long_bracket(at)   -- at points to "[": returns the closing position or nil
    local eq = text:match("^%[(=*)%[", at)
    if not eq then return nil end
    local close = "]" .. eq .. "]"
    local a, b = text:find(close, at + #eq + 2, true)
    if not a then return len + 1, len end
    return b + 1, a - 1, at + #eq + 2
  end
  if text:sub(1, 1) == "#" then i = (text:find("\n", 1, true) or len + 1) end   -- #! line
  local find, sub, byte, match = string.find, string.sub, string.byte, string.match
  while true do
    i = find(text, "[^ \t\r\f\v]", i)
    if not i then break end
    local b = byte(text, i)
    local b2 = byte(text, i + 1)
    if b == 10 then line = line + 1; i = i + 1
    elseif b == 45 and b2 == 45 then                                   -- a comment
      local nexti = long_bracket(i + 2)
      if nexti then
        local _, nl = sub(text, i, nexti - 1):gsub("\n", "")
        line = line + nl; i = nexti
      else
        i = find(text, "\n", i, true) or len + 1
      end
    elseif b == 91 and (b2 == 91 or b2 == 61) and match(text, "^%[=*%[", i) then   -- [[long string]]
      local nexti, last, first = long_bracket(i)
      add("str", sub(text, first, last), line)
      local _, nl = sub(text, i, nexti - 1):gsub("\n", "")
      line = line + nl; i = nexti
    elseif b == 34 or b == 39 then                                     -- "string" / 'string'
      local c = b == 34 and '"' or "'"
      local j, buf, startline, esc = i + 1, {}, line, false
      local stop = b == 34 and '["\\\n]' or "['\\\n]"
      while j <= len do
        local k = find(text, stop, j)
        if not k then j = len + 1; break end
        if k > j then buf[#buf + 1] = sub(text, j, k - 1); j = k end
        local d = sub(text, j, j)
        if d == c then break end
        if d == "\\" then
          esc = true
          local e = sub(text, j + 1, j + 1)
          if e == "\n" then line = line + 1 end
          if e == "z" then
            local ws = match(text, "^%s*", j + 2)
            local _, nl = ws:gsub("\n", "")
            line = line + nl; j = j + 2 + #ws
          else
            buf[#buf + 1] = "\\" .. e; j = j + 2
          end
        else break end   -- a newline: unterminated, the loader refused it already
      end
      n = n + 1; toks[n] = { t = "str", v = table.concat(buf), line = startline, esc = esc }
      i = j + 1
    elseif (b >= 48 and b <= 57) or (b == 46 and b2 and b2 >= 48 and b2 <= 57) then   -- a number
      local num = match(text, "^0[xX][%x%.]*[pP][+-]?%d+", i) or match(text, "^0[xX][%x%.]*", i)
        or match(text, "^%d*%.?%d*[eE][+-]?%d+", i) or match(text, "^%d*%.?%d*", i)
      add("num", num, line); i = i + #num
    elseif b == 95 or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) then   -- a name
      local _, e = find(text, "^[%w_]+", i)
      local w = sub(text, i, e)
      add(KEYWORDS[w] and "kw" or "name", w, line); i = e + 1
    else
      local three, two = sub(text, i, i + 2), sub(text, i, i + 1)
      if OPS3[three] then add("op", three, line); i = i + 3
      elseif OPS2[two] then add("op", two, line); i = i + 2
      else add("op", sub(text, i, i), line); i = i + 1 end
    end
  end
  add("eof", "", line)
  return toks
end

-- requires(text) -> { {name=, line=}, ... }: the literal module names the source requires.
function M.requires(text)
  local toks, out = M.tokens(text), {}
  for i, tk in ipairs(toks) do
    if tk.t == "name" and tk.v == "require" and (i == 1 or (toks[i - 1].v ~= "." and toks[i - 1].v ~= ":")) then
      local a = toks[i + 1]
      if a.v == "(" then a = toks[i + 2] end
      if a and a.t == "str" and not a.esc then out[#out + 1] = { name = a.v, line = a.line } end
    end
  end
  return out
end

-- file(path, text, opts) -> problems (see the top of the file), in source order.
function M.file(path, text, opts)
  local toks = M.tokens(text)
  local problems, seen = {}, {}
  local function report(line, msg)
    local key = line .. "\0" .. msg
    if seen[key] then return end
    seen[key] = true
    problems[#problems + 1] = { line = line, message = msg }
  end
  local globals = opts.globals or {}
  local scopes = { {} }
  local function declare(name) scopes[#scopes][name] = true end
  local function visible(name)
    for s = #scopes, 1, -1 do if scopes[s][name] then return true end end
    return false
  end
  local function push() scopes[#scopes + 1] = {} end
  local function pop(keep)
    if #scopes <= 1 then return end
    local top = table.remove(scopes)
    if keep then for k in pairs(top) do scopes[#scopes][k] = true end end
  end
  local named = {}          -- one report per global per line (total = #list; return total)
  local function global_ref(tk, write)
    if visible(tk.v) or globals[tk.v] or tk.v == "_ENV" then return end
    if named[tk.line .. "\0" .. tk.v] then return end
    named[tk.line .. "\0" .. tk.v] = true
    report(tk.line, write and ("assigns the undeclared global '%s' (runbooks have no globals: use local)"):format(tk.v)
      or ("reads the undeclared global '%s' (a misspelt name? runbooks have no globals but the sandbox's)"):format(tk.v))
  end
  local brackets = {}
  local for_do = 0          -- `do`s whose scope a `for` already opened
  local local_fn = false    -- the next `function` is `local function NAME`
  local i = 1
  while toks[i].t ~= "eof" do
    local tk, prev, nxt = toks[i], toks[i - 1] or { t = "op", v = "" }, toks[i + 1]
    local step = 1
    if tk.t == "kw" then
      local v = tk.v
      if v == "local" and nxt.t == "kw" and nxt.v == "function" then
        if toks[i + 2].t == "name" then declare(toks[i + 2].v) end
        local_fn = true
      elseif v == "local" then
        local j = i + 1
        while toks[j].t == "name" do
          declare(toks[j].v)
          j = j + 1
          if toks[j].v == "<" and toks[j + 1].t == "name" and toks[j + 2].v == ">" then j = j + 3 end
          if toks[j].v ~= "," then break end
          j = j + 1
        end
        step = j - i
      elseif v == "function" then
        push()
        local j = i + 1
        if toks[j].t == "name" then
          if not local_fn then global_ref(toks[j], toks[j + 1].v == "(") end
          j = j + 1
          local method = false
          while (toks[j].v == "." or toks[j].v == ":") and toks[j + 1].t == "name" do
            if toks[j].v == ":" then method = true end
            j = j + 2
          end
          if method then declare("self") end
        end
        local_fn = false
        if toks[j].v == "(" then
          j = j + 1
          while toks[j].v ~= ")" and toks[j].t ~= "eof" do
            if toks[j].t == "name" then declare(toks[j].v) end
            j = j + 1
          end
          j = j + 1
        end
        step = j - i
      elseif v == "for" then
        push(); for_do = for_do + 1
        local j = i + 1
        while toks[j].t == "name" or toks[j].v == "," do
          if toks[j].t == "name" then declare(toks[j].v) end
          j = j + 1
        end
        step = j - i
      elseif v == "do" then
        if for_do > 0 then for_do = for_do - 1 else push() end
      elseif v == "then" or v == "repeat" then push()
      elseif v == "elseif" then pop()
      elseif v == "else" then pop(); push()
      elseif v == "end" then pop()
      elseif v == "until" then pop(true)
      elseif v == "goto" then step = 2
      end
    elseif tk.t == "op" then
      local v = tk.v
      if v == "(" or v == "[" or v == "{" then brackets[#brackets + 1] = v
      elseif v == ")" or v == "]" or v == "}" then brackets[#brackets] = nil
      elseif v == "::" then step = 3   -- ::label::
      end
    elseif tk.t == "name" then
      local field = prev.t == "op" and (prev.v == "." or prev.v == ":")
      local key = brackets[#brackets] == "{" and nxt.v == "=" and prev.t == "op"
        and (prev.v == "{" or prev.v == "," or prev.v == ";")
      if not field and not key then global_ref(tk, nxt.v == "=") end
      if tk.v == "ctx" and not field and opts.ctx_has and (nxt.v == ":" or nxt.v == ".")
          and toks[i + 2].t == "name" and not opts.ctx_has(toks[i + 2].v) then
        report(toks[i + 2].line, ("ctx%s%s: the context has no such method or field"):format(nxt.v, toks[i + 2].v))
      end
      if tk.v == "cause" and opts.causes and nxt.v == "=" and toks[i + 2].t == "str"
          and toks[i + 3].v ~= ".." and not opts.causes[toks[i + 2].v] then
        report(toks[i + 2].line, ("cause '%s' is not in the cause list (%s)"):format(toks[i + 2].v,
          opts.causes_from or "runbooks/lib/causes.lua"))
      end
    end
    i = i + step
  end
  table.sort(problems, function(a, b) return a.line < b.line or (a.line == b.line and a.message < b.message) end)
  return problems
end

return M
