-- ssh_quote.t: runbook.ssh.quote, the one function that turns argv into a remote shell command.
-- Exact output for known inputs, misuse raising, and a round trip through a real POSIX shell
-- (dash, /bin/sh) for hostile and random byte strings: the shell must hand back exactly argv.
local t = require "tap"
local ssh = require "runbook.ssh"
local exec = require "runbook.exec"

local q = ssh.quote
t.is(q { "ls" }, "'ls'", "one word")
t.is(q { "a b", "c" }, "'a b' 'c'", "spaces stay inside one argument")
t.is(q { "" }, "''", "empty string is an empty argument")
t.is(q { "it's" }, [['it'\''s']], "single quote written as '\\''")
t.is(q { "'" }, [[''\''']], "a lone quote")
t.is(q { "''" }, [[''\'''\''']], "two quotes")
t.is(q { "$(id)" }, "'$(id)'", "$(...) stays literal")
t.is(q { "`id`" }, "'`id`'", "backticks stay literal")
t.is(q { "a;b" }, "'a;b'", "; stays literal")
t.is(q { "a\nb" }, "'a\nb'", "newline inside quotes")
t.is(q { "\\" }, "'\\'", "backslash needs nothing inside single quotes")

local function raises(f, pat, name)
  local ok, e = pcall(f)
  t.ok(not ok and tostring(e):find(pat), name .. (ok and "" or (": " .. tostring(e))))
end
raises(function() q { "a\0b" } end, "NUL", "NUL byte rejected")
raises(function() q { "ok", "x\0" } end, "argv%[2%]", "... naming the argument")
raises(function() q {} end, "non%-empty", "empty argv rejected")
raises(function() q { "a", 5 } end, "argv%[2%] must be a string", "non-string rejected")
raises(function() q "ls" end, "table expected", "a string instead of a list rejected")

-- round trip through /bin/sh: printf '%s\0' <quoted> must give back every argument
local function roundtrip(args)
  local r = assert(exec.run({ "sh", "-c", "printf '%s\\0' " .. q(args) }, { timeout = 10 }))
  local got = {}
  for a in r.stdout:gmatch("([^%z]*)%z") do got[#got + 1] = a end
  if #got ~= #args then return false end
  for i = 1, #args do if got[i] ~= args[i] then return false end end
  return true
end
local hostile = { "it's", "$(touch /tmp/rbq)", "`touch /tmp/rbq`", "; touch /tmp/rbq", "a\nb\n", "",
  "\"\\\"", "${IFS}*?[]~&|<>#!%", "'\\''", "\t\r\v\f", "-n", "--", "\255\254 bytes" }
t.ok(roundtrip(hostile), "hostile arguments survive /bin/sh unchanged")
t.ok(not io.open("/tmp/rbq"), "nothing was executed")
math.randomseed(42)
local all = true
for _ = 1, 100 do
  local args = {}
  for i = 1, math.random(1, 5) do
    local b = {}
    for j = 1, math.random(0, 40) do b[j] = string.char(math.random(1, 255)) end
    args[i] = table.concat(b)
  end
  if not roundtrip(args) then all = false break end
end
t.ok(all, "100 random argv of arbitrary bytes (1..255) survive /bin/sh unchanged")
t.done()
