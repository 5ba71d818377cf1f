-- json.t: runbook.json encode/decode (src/ljson.c)
local t = require "tap"
local json = require "runbook.json"

local enc, dec = json.encode, json.decode

local function raises(f, pat, name)
  local ok, err = pcall(f)
  t.ok(not ok, name .. " raises")
  t.like(tostring(err), pat, name .. " message")
end

local function fails(text, pat, name)
  local v, msg, code = dec(text)
  t.is(v, nil, name .. ": nil")
  t.like(msg, pat, name .. ": message")
  t.is(code, "protocol", name .. ": code")
end

-- scalars
t.is(enc(true), "true", "true")
t.is(enc(false), "false", "false")
t.is(enc(nil), "null", "nil encodes as null")
t.is(enc(json.null), "null", "json.null encodes as null")
t.is(enc(42), "42", "integer")
t.is(enc(-7), "-7", "negative integer")
t.is(enc(math.maxinteger), "9223372036854775807", "maxinteger exact")
t.is(enc(math.mininteger), "-9223372036854775808", "mininteger exact")
t.is(enc(2.0), "2.0", "integral float keeps a fraction")
t.is(enc(0.1), "0.1", "shortest round-trip float")
t.is(enc(1/3), "0.3333333333333333", "1/3 with 16 digits")
t.is(dec(enc(1/3)), 1/3, "1/3 round trips exactly")
t.is(dec(enc(123456.789e-300)), 123456.789e-300, "tiny float round trips")
t.is(enc(1e300), "1e+300", "big float")
raises(function() enc(math.huge) end, "infinity", "inf")
raises(function() enc(-math.huge) end, "infinity", "-inf")
raises(function() enc(0/0) end, "NaN", "nan")
raises(function() enc({a = {b = 0/0}}) end, "at %$%.a%.b", "nan error names the path")

-- strings and escapes
t.is(enc("plain"), '"plain"', "plain string")
t.is(enc('q"b\\'), '"q\\"b\\\\"', "quote and backslash")
t.is(enc("a\nb\r\tc\b\f"), '"a\\nb\\r\\tc\\b\\f"', "short escapes")
t.is(enc("\1\31\127"), '"\\u0001\\u001f\\u007f"', "control chars and DEL as \\u00XX")
t.is(enc("a\0b"), '"a\\u0000b"', "NUL inside a Lua string")
t.is(enc("é€😀"), '"é€😀"', "valid UTF-8 passes through")
local R = "\u{FFFD}"
t.is(enc("a\255b"), '"a' .. R .. 'b"', "invalid byte replaced by U+FFFD")
t.is(enc("\xC3"), '"' .. R .. '"', "truncated sequence replaced")
t.is(enc("\xC0\xAF"), '"' .. R:rep(2) .. '"', "overlong: one replacement per byte")
t.is(enc("\xED\xA0\x80"), '"' .. R:rep(3) .. '"', "encoded surrogate rejected")
t.is(enc("\xF4\x90\x80\x80"), '"' .. R:rep(4) .. '"', "above U+10FFFF rejected")
t.is(enc("\xE2\x82"), '"' .. R:rep(2) .. '"', "sequence cut short by the end")
t.is(enc(dec(enc("x\255\xC3y"))), enc("x\255\xC3y"), "re-encoding decoded output is stable")
t.is(dec(enc("x\0y\1\n\"\\")), "x\0y\1\n\"\\", "escapes round trip (NUL included)")
local all = {}
for i = 0, 255 do all[#all + 1] = string.char(i) end
all = table.concat(all)
local e = enc(all)
t.ok(not e:find("[%z\1-\31\127]"), "any bytes encode without raw control characters")
t.ok(utf8.len(e) ~= nil, "any bytes encode to valid UTF-8")
t.ok(dec(e) ~= nil, "and that output decodes")

-- arrays vs objects
t.is(enc({1, 2, 3}), "[1,2,3]", "sequence is an array")
t.is(enc({}), "{}", "empty table is an object")
t.is(enc(setmetatable({}, json.array_mt)), "[]", "empty table with array_mt is []")
t.is(enc({[1] = "a", [3] = "c"}), '{"1":"a","3":"c"}', "holes make an object")
t.is(enc({[0] = "z"}), '{"0":"z"}', "key 0 makes an object")
t.is(enc({1, x = 2}), '{"1":1,"x":2}', "mixed keys make an object")
t.is(enc({b = 1, a = 2, c = {z = 1, y = 2}}), '{"a":2,"b":1,"c":{"y":2,"z":1}}', "keys sorted by default")
t.is(enc({[10] = 1, [2] = 2, x = 3}), '{"10":1,"2":2,"x":3}', "integer keys sorted as their text")
local unsorted = enc({b = 1, a = 2}, {sort_keys = false})
t.ok(unsorted == '{"a":2,"b":1}' or unsorted == '{"b":1,"a":2}', "sort_keys=false still valid")
t.is(enc({a = {1, {}}, b = {}}, {pretty = true}),
  '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": {}\n}', "pretty output")
raises(function() enc(setmetatable({x = 1}, json.array_mt)) end, "array_mt", "array_mt with string key")
raises(function() enc({[true] = 1}) end, "keys must be strings or integers", "boolean key")
raises(function() enc({[1.5] = 1}) end, "keys must be strings or integers", "float key")
raises(function() enc({[1] = 1, ["1"] = 2}) end, "duplicate object key", "1 and \"1\" collide")
raises(function() enc({f = print}) end, "type function at %$%.f", "function value")
raises(function() enc({co = coroutine.create(print)}) end, "type thread", "thread value")
raises(function() enc({}, {prety = true}) end, "unknown option 'prety'", "unknown option")
raises(function() enc({}, {pretty = "yes"}) end, "must be a boolean", "option type")
raises(function() enc({}, 5) end, "table expected", "options must be a table")

t.is(tostring(json.null), "null", "tostring(json.null)")
t.is(enc(setmetatable({a = 1}, {__pairs = function() return next, {b = 2} end, __index = {c = 3}})),
  '{"a":1}', "encoding is raw: __pairs and __index are ignored")

-- depth and cycles
local deep = {}
for _ = 1, 99 do deep = {deep} end
t.ok(pcall(enc, deep), "depth 100 encodes")
raises(function() enc({deep}) end, "nesting deeper than 100", "depth 101")
local cyc = {}
cyc.self = cyc
raises(function() enc(cyc) end, "cycle detected.*at %$%.self", "direct cycle")
local a, b = {}, {}
a[1] = b; b.back = a
raises(function() enc(a) end, "cycle detected", "indirect cycle")
local shared = {1}
t.is(enc({shared, shared}), "[[1],[1]]", "shared (acyclic) table is not a cycle")
t.is(enc({ok = true}), '{"ok":true}', "encoder usable after errors")

-- decode
local v = dec('{"a":[1,2.5,-3,1e2,true,false,null],"s":"x","o":{},"e":[]}')
t.is(math.type(v.a[1]), "integer", "1 decodes as integer")
t.is(math.type(v.a[2]), "float", "2.5 decodes as float")
t.is(v.a[3], -3, "negative integer")
t.is(math.type(v.a[4]), "float", "1e2 decodes as float")
t.is(v.a[4], 100.0, "1e2 value")
t.is(v.a[5], true, "true")
t.is(v.a[6], false, "false")
t.is(v.a[7], json.null, "null decodes as json.null")
t.is(#v.a, 7, "array length includes null")
t.is(getmetatable(v.a), json.array_mt, "arrays carry array_mt")
t.is(getmetatable(v.o), nil, "objects carry no metatable")
t.is(enc(v.e), "[]", "empty array round trips as []")
t.is(enc(v.o), "{}", "empty object round trips as {}")
t.is(dec("9223372036854775807"), math.maxinteger, "int64 max exact")
t.is(dec("-9223372036854775808"), math.mininteger, "int64 min exact")
t.is(dec("9007199254740993"), 9007199254740993, "2^53+1 exact (not via double)")
t.is(math.type(dec("9223372036854775808")), "float", "beyond int64 becomes float")
t.is(dec('"\\u00e9"'), "é", "\\u00e9")
t.is(dec('"\\ud83d\\ude00"'), "😀", "surrogate pair")
t.is(dec('"\\"\\\\\\/\\b\\f\\n\\r\\t"'), "\"\\/\b\f\n\r\t", "all short escapes")
t.is(dec('  [ 1 , 2 ]  \n')[2], 2, "whitespace allowed")
t.is(dec('{"a":1,"a":2}').a, 2, "duplicate key: last wins")
t.is(dec('{"1":"x"}')["1"], "x", "numeric-looking keys stay strings")
local doc = {name = "relay", n = 3, f = 0.5, list = {"a", "b"}, nested = {deep = {x = json.null}}, empty = {}}
t.is(enc(dec(enc(doc))), enc(doc), "round trip is stable")
t.is(enc(dec(enc(doc, {pretty = true}))), enc(doc), "pretty output decodes to the same")
local d100 = string.rep("[", 100) .. string.rep("]", 100)
t.ok(dec(d100) ~= nil, "decode depth 100")

-- malformed input
fails("", "end of input at line 1 column 1", "empty")
fails("[1,", "end of input", "truncated array")
fails('{"a" 1}', "syntax error at line 1 column 6", "missing colon")
fails('{\n  "a": 1,\n  "b": x\n}', "line 3 column 8", "position on a later line")
fails("[1] x", "syntax error", "trailing garbage")
fails("[1]\0", "invalid character", "trailing NUL")
fails("01", "invalid number", "leading zero")
fails("[1.]", "invalid number", "bare fraction dot")
fails("[-.5]", "invalid number", "missing integer part")
fails("1e999", "number out of range", "overflowing float")
fails('"a\1b"', "raw control character", "raw control char in string")
t.is(dec('"a\\u0000b"'), "a\0b", "\\u0000 decodes, not truncated")
t.is(dec('{"k\\u0000":"\\u0000\\u00e9\\ud83d\\ude00\\n"}')["k\0"], "\0é😀\n", "\\u0000 in key and value with other escapes")
fails('"\\ud800"', "syntax error", "lone high surrogate")
fails('"\\x"', "syntax error", "bad escape")
fails('"\\udead"', "syntax error", "lone low surrogate")
fails('"\\ud83d\\u0041"', "syntax error", "high surrogate without its low half")
fails("nul", "syntax error", "bad literal")
fails("{'a':1}", "syntax error", "single quotes")
fails(string.rep("[", 101) .. string.rep("]", 101), "nesting deeper than 100", "depth 101")
raises(function() dec() end, "string expected", "decode without argument")
raises(function() dec({}) end, "string expected", "decode of a table")

-- found by fuzzing (tests/fuzz/fz_json.c): a long mantissa slipped past the range check, and
-- keys with invalid UTF-8 were sorted raw but written as U+FFFD (order and uniqueness broke)
fails("-2" .. string.rep("3", 100) .. "e999", "number out of range", "overflowing float of 100+ characters")
fails(string.rep("9", 400), "number out of range", "400-digit integer overflows a double")
t.is(dec('"a\xffb"'), "a\xEF\xBF\xBDb", "invalid UTF-8 in a string decodes as U+FFFD, as encode writes it")
do
  local v = dec('{"\xff":1,"\xfe":2}')
  local n, only = 0, nil
  for k, x in pairs(v) do n = n + 1; only = x end
  t.is(n, 1, "two keys differing only in invalid bytes decode as one key")
  t.is(only, 2, "the later one wins, as for any duplicate key")
  local once = enc(dec('{"\xe1fal":1,"\xf3a":2}'))
  t.is(enc(dec(once)), once, "a decoded object with invalid UTF-8 keys encodes stably")
  t.is(once, '{"\xEF\xBF\xBDa":2,"\xEF\xBF\xBDfal":1}', "keys sorted as written")
  raises(function() enc({ ["\xff"] = 1, ["\xfe"] = 2 }) end, "duplicate object key",
    "encode refuses two keys that would be written the same")
end

t.done()
