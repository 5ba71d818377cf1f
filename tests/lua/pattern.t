-- pattern.t: runbook.pattern (src/lpattern.c), the deadline-bounded string.find/match/gmatch/
-- gsub the engine installs in the string table, against Lua's own functions (kept as
-- runbook.pattern.stock): the same results and the same errors on hand-written cases and on
-- thousands of random patterns and subjects (fixed seed), and the budget itself: a
-- backtracking pattern ends with "deadline exceeded" once the deadline passes. PATTERN_N and
-- PATTERN_SEED run more random cases (180,000 over seeds 1-3 found no difference).
local t = require "tap"
local core = require "runbook.core"
local pattern = require "runbook.pattern"
local stock = pattern.stock

t.ok(stock.find and stock.match and stock.gmatch and stock.gsub, "the stock functions are kept for comparison")
t.ok(string.find == pattern.find and string.gsub == pattern.gsub, "the engine installed the bounded functions in string")
t.ok(("x").find == pattern.find, "string methods use them too (the same table)")

-- run(f, ...) -> a comparable record of everything f returned or the error it raised
local function run(f, ...)
  local r = table.pack(pcall(f, ...))
  local parts = {}
  for i = 1, r.n do parts[i] = type(r[i]) .. ":" .. tostring(r[i]) end
  return table.concat(parts, "|")
end

local function gmatch_all(gm, s, p, init)
  local out = {}
  for a, b, c in gm(s, p, init) do
    out[#out + 1] = tostring(a) .. "," .. tostring(b) .. "," .. tostring(c)
    if #out > 200 then break end
  end
  return table.concat(out, ";")
end

local function same(name, f_new, f_old, ...)
  local a, b = run(f_new, ...), run(f_old, ...)
  if a ~= b then
    t.diag(("%s: bounded %s\n  stock %s"):format(name, a, b))
  end
  return a == b
end

local function compare(s, p, extra)
  local ok = true
  ok = same("find " .. p, pattern.find, stock.find, s, p, extra.init) and ok
  ok = same("find plain " .. p, pattern.find, stock.find, s, p, extra.init, true) and ok
  ok = same("match " .. p, pattern.match, stock.match, s, p, extra.init) and ok
  ok = same("gmatch " .. p, function(...) return gmatch_all(pattern.gmatch, ...) end,
    function(...) return gmatch_all(stock.gmatch, ...) end, s, p, extra.init) and ok
  ok = same("gsub str " .. p, pattern.gsub, stock.gsub, s, p, extra.repl, extra.n) and ok
  ok = same("gsub fn " .. p, pattern.gsub, stock.gsub, s, p, function(a, b) return b and (b .. a) or nil end, extra.n) and ok
  ok = same("gsub tbl " .. p, pattern.gsub, stock.gsub, s, p, { a = "A", ["1"] = 1, b = false }, extra.n) and ok
  return ok
end

-- ---------------------------------------------------------------- hand-written cases
local cases = {
  { "hello world", "o w" }, { "hello world", "o", init = -3 }, { "hello", "l+" }, { "hello", "" },
  { "", "" }, { "", "a*" }, { "abc", "^(a)(b)(c)$" }, { "key = value ", "^%s*(%S+)%s*=%s*(.-)%s*$" },
  { "THE (quick) fox", "%((%a+)%)" }, { "f(a(b)c)d", "%b()" }, { "THE (quick) fox", "%f[%a]%a+" },
  { "hello hello", "(h)(e)llo %1%2" }, { "aaa", "a-b" }, { "aaab", "a-b" }, { "x = 1, y = 2", "(%w+) = (%w+)" },
  { "abc", "()b()" }, { "a.b.c", ".", repl = "%0%0" }, { "a.b.c", "%.", repl = "%%" }, { "abc", "b", repl = "%1" },
  { "abc", "(b)", repl = "[%1]" }, { "abc", "b", repl = "%2" }, { "abc", "b", repl = "%x" }, { "abc", "[a-", },
  { "abc", "%" }, { "abc", "(()" }, { "abc", "%1" }, { "abc", "a)" }, { "abc", "%bx" }, { "abc", "%f" },
  { "a\0b", "\0" }, { "a\0b", "[\0]" }, { "a\0b", "%z" }, { "]]", "[]]" }, { "^^", "[^^]" }, { "a-b", "[a%-]+" },
  { "2024-01-02", "(%d+)-(%d+)-(%d+)" }, { "x", "x", init = 5 }, { "x", "x", init = 2 }, { "abc", "$" },
  { "abc", "c$" }, { "a$c", "a$c" }, { "abc", "^" }, { "^abc", "^^a" }, { "aaa", "a?a?a?aaa" },
  { "one two  three", "%s*", repl = "_" }, { "abc", "", repl = "-" }, { "abc", "b*", repl = "-" },
  { "hello", "l", n = 1, repl = "L" }, { "hello", "l", n = 0, repl = "L" },
  { string.rep("(", 40) .. string.rep(")", 40), string.rep("%(", 33) },
  { "abc", string.rep("(", 33) .. "a" .. string.rep(")", 33) },
}
local ok_cases = true
for _, c in ipairs(cases) do
  if not compare(c[1], c[2], { init = c.init, repl = c.repl or "<%0>", n = c.n }) then ok_cases = false end
end
t.ok(ok_cases, ("%d hand-written cases: same results and errors as Lua's own functions"):format(#cases))

-- ---------------------------------------------------------------- random cases
math.randomseed(tonumber(os.getenv("PATTERN_SEED") or 20261130))
local atoms = { "a", "b", ".", "%a", "%d", "%s", "%w", "[ab]", "[^a]", "[a-c]", "%.", "%%", "(", ")", "()",
  "%b()", "%f[%w]", "%1", "$", "^", "[", "]", "-", "1", " " }
local quant = { "", "", "", "*", "+", "-", "?" }
local chars = { "a", "b", "c", "1", "2", " ", "(", ")", ".", "%", "-", "\n", "\0" }
local function random_pattern()
  local n = math.random(0, 6)
  local p = {}
  for i = 1, n do p[i] = atoms[math.random(#atoms)] .. quant[math.random(#quant)] end
  return table.concat(p)
end
local function random_subject()
  local n = math.random(0, 14)
  local s = {}
  for i = 1, n do s[i] = chars[math.random(#chars)] end
  return table.concat(s)
end
local mismatches, N = 0, tonumber(os.getenv("PATTERN_N") or 3000)
for _ = 1, N do
  local init = ({ nil, 1, 2, -2, 0, 20 })[math.random(6)]
  if not compare(random_subject(), random_pattern(), { init = init, repl = ({ "x", "%0", "%1", "%%", "[%2]" })[math.random(5)],
      n = ({ nil, 1, 2 })[math.random(3)] }) then
    mismatches = mismatches + 1
    if mismatches > 5 then break end
  end
end
t.is(mismatches, 0, ("%d random patterns and subjects: same results and errors as Lua's own functions"):format(N))

-- ---------------------------------------------------------------- the budget
local s = string.rep("a", 3000)
local bomb = string.rep("a-", 6) .. "b"
local t0 = core.now()
local ok, r, why = core.pcall_deadline(1, function(e) return e end, function() return s:find(bomb) end)
local took = core.now() - t0
t.ok(not ok and tostring(r):find("deadline exceeded", 1, true) and why == "deadline",
  "a backtracking find ends with 'deadline exceeded' once the deadline passes: " .. tostring(r))
t.ok(took < 2, ("... within a second of the deadline (took %.2fs)"):format(took))
ok, r = core.pcall_deadline(1, function(e) return e end, function()
  return s:gsub(string.rep("a*", 5) .. "b", "x") end)
t.ok(not ok and tostring(r):find("deadline exceeded", 1, true), "gsub too")
ok, r = core.pcall_deadline(1, function(e) return e end, function()
  for _ in s:gmatch(string.rep("a-", 5) .. "b") do end end)
t.ok(not ok and tostring(r):find("deadline exceeded", 1, true), "gmatch too")
ok, r = core.pcall_deadline(1, function(e) return e end, function()
  return s:match(string.rep("a*", 5) .. "$") end)
t.ok(ok and r == s, "a pattern that matches quickly is not disturbed by the budget")
-- the stock function is the defect: it does not look at the clock (a smaller bomb, so the
-- check ends: the stock find runs past the deadline and returns normally)
local small = string.rep("a", 70)
t0 = core.now()
ok = core.pcall_deadline(0.05, function(e) return e end, function() return stock.find(small, string.rep("a-", 4) .. "b") end)
t.ok(ok and core.now() - t0 > 0.05, ("control: the stock find ignores the deadline (ran %.2fs past a 0.05s deadline)"):format(core.now() - t0))

t.done()
