-- yaml.t: runbook.yaml loader and marks (src/lyaml.c)
local t = require "tap"
local yaml = require "runbook.yaml"
local json = require "runbook.json"

local function fails(text, pat, name, chunk)
  local v, msg, code = yaml.load(text, chunk or "t.yaml")
  t.is(v, nil, name .. ": nil")
  t.like(msg, pat, name .. ": message")
  t.is(code, "protocol", name .. ": code")
end

local function scalar(s) return (assert(yaml.load("v: " .. s))).v end

-- plain scalar conversions
for _, w in ipairs{"true", "True", "TRUE", "yes", "Yes", "on", "ON"} do
  t.is(scalar(w), true, "plain " .. w .. " is true")
end
for _, w in ipairs{"false", "False", "no", "NO", "off", "Off"} do
  t.is(scalar(w), false, "plain " .. w .. " is false")
end
t.is(scalar("42"), 42, "integer")
t.is(math.type(scalar("42")), "integer", "integer type")
t.is(scalar("-7"), -7, "negative integer")
t.is(scalar("+7"), 7, "signed integer")
t.is(scalar("0"), 0, "zero")
t.is(scalar("0x1F"), 31, "hex integer")
t.is(scalar("0o17"), 15, "octal integer")
t.is(scalar("9223372036854775807"), math.maxinteger, "int64 max")
t.is(math.type(scalar("99999999999999999999")), "float", "decimal overflow becomes float")
t.is(scalar("0755"), "0755", "leading zero stays a string")
t.is(scalar("2.5"), 2.5, "float")
t.is(math.type(scalar("1.0")), "float", "1.0 is a float")
t.is(scalar("-1e3"), -1000.0, "exponent float")
t.is(scalar(".5"), 0.5, "leading-dot float")
t.is(scalar(".inf"), math.huge, ".inf")
t.is(scalar("-.Inf"), -math.huge, "-.Inf")
local nan = scalar(".nan")
t.ok(nan ~= nan, ".nan")
t.is(scalar("10s"), "10s", "duration stays a string")
t.is(scalar("1.2.3"), "1.2.3", "version stays a string")
t.is(scalar("127.0.0.1"), "127.0.0.1", "address stays a string")
t.is(scalar("yes please"), "yes please", "bool word inside text stays a string")
t.is(scalar("1e"), "1e", "bad exponent stays a string")

-- quoted and block scalars stay strings
t.is(scalar('"true"'), "true", "double-quoted true")
t.is(scalar("'42'"), "42", "single-quoted 42")
t.is(scalar('"~"'), "~", "quoted ~")
t.is(scalar('""'), "", "quoted empty string")
t.is(scalar('"a\\0b"'), "a\0b", "double-quoted \\0 keeps its NUL")
t.is(scalar('"\\u00e9"'), "é", "double-quoted unicode escape")
t.is(assert(yaml.load("v: |\n  l1\n  l2\n")).v, "l1\nl2\n", "literal block")
t.is(assert(yaml.load("v: >-\n  a\n  b\n")).v, "a b", "folded block")
t.is(assert(yaml.load("v: |\n  42\n")).v, "42\n", "block scalar is never converted")

-- tags
t.is(scalar("!!str 42"), "42", "!!str")
t.is(scalar("!!int '7'"), 7, "!!int on a quoted scalar")
t.is(math.type(scalar("!!float 3")), "float", "!!float 3 is a float")
t.is(scalar("!!bool 'yes'"), true, "!!bool")
t.is(scalar("! 12"), "12", "non-specific tag means string")
fails("v: !!int x\n", "t.yaml:1:4: invalid !!int value 'x'", "bad !!int")
fails("v: !foo x\n", "t.yaml:1:4: unsupported tag '!foo'", "custom tag")
fails("v: !!binary aGk=\n", "unsupported tag", "!!binary")
fails("v: !!set {a}\n", "unsupported tag", "!!set")
fails("!!int 1: x\n", "unsupported tag .* on a mapping key", "tagged key")

-- null
local d = assert(yaml.load("a: ~\nb:\nc: null\nd: 1\nseq: [1, ~, 3]\n"))
t.is(d.a, nil, "a: ~ leaves the key out")
t.is(d.b, nil, "empty value leaves the key out")
t.is(d.c, nil, "null leaves the key out")
t.is(d.d, 1, "sibling present")
t.ok(yaml.mark(d, "b") ~= nil, "but an empty value's key still has a mark")
t.is(#d.seq, 3, "null sequence item keeps the length")
t.is(d.seq[2], yaml.null, "null sequence item is yaml.null")
t.is(yaml.null, json.null, "yaml.null is json.null")
t.is(yaml.load(""), yaml.null, "empty stream loads as null")
t.is(yaml.load("# only a comment\n"), yaml.null, "comment-only stream loads as null")
t.is(yaml.load("~"), yaml.null, "null document")
t.is(yaml.load("hello"), "hello", "scalar document")

-- nested structures
local inv = assert(yaml.load([[
defaults: { timeout: 10s, connect_timeout: 5s }
hosts:
  ec2:
    transport: ssh
    port: 2222
    services:
      postfix: { container: mailserver-postfix, kind: postfix }
    tags:
      - mx
      - { name: edge, weight: 2 }
mail:
  hosted_domains: [example.test, shop.test]
]], "inv.yaml"))
t.is(inv.defaults.timeout, "10s", "flow mapping")
t.is(inv.hosts.ec2.port, 2222, "nested block mapping integer")
t.is(inv.hosts.ec2.services.postfix.kind, "postfix", "three levels deep")
t.is(inv.hosts.ec2.tags[1], "mx", "block sequence")
t.is(inv.hosts.ec2.tags[2].weight, 2, "mapping inside a sequence")
t.is(#inv.mail.hosted_domains, 2, "flow sequence")
t.is(getmetatable(inv), nil, "plain tables: no metatable")
local keys = 0
for _ in pairs(inv) do keys = keys + 1 end
t.is(keys, 3, "no hidden keys in the user's tables")
t.is(json.encode(inv.mail), '{"hosted_domains":["example.test","shop.test"]}', "plain data encodes as JSON")

-- marks
local function mark(...) return table.concat({yaml.mark(...)}, ":") end
t.is(mark(inv, "defaults"), "1:11:1:1", "top-level flow value and key")
t.is(mark(inv, "hosts"), "3:3:2:1", "block mapping value starts at its first key")
t.is(mark(inv.hosts.ec2, "port"), "5:11:5:5", "depth 3 scalar value and key")
t.is(mark(inv.hosts.ec2.services.postfix, "kind"), "7:55:7:49", "depth 5 flow mapping value")
t.is(mark(inv.hosts.ec2.tags, 2), "10:9", "sequence item (no key mark)")
t.is(mark(inv.hosts.ec2.tags[2], "weight"), "10:31:10:23", "mapping inside a sequence")
t.is(mark(inv.mail.hosted_domains, 2), "12:34", "flow sequence item")
t.is(mark(inv.hosts.ec2), "4:5", "mark of a table itself")
t.is(mark(inv.hosts.ec2.tags), "9:7", "mark of a sequence itself")
t.is(yaml.mark(inv, "nope"), nil, "unknown key has no mark")
t.is(yaml.mark({}, "x"), nil, "foreign table has no mark")
t.ok(not pcall(yaml.mark, "x"), "mark of a non-table raises")

-- marks are weak: they go away with the document
local marks = debug.getregistry()["runbook.yaml.marks"]
local function count() local n = 0 for _ in pairs(marks) do n = n + 1 end return n end
collectgarbage(); collectgarbage()
local before = count()
local tmp = assert(yaml.load("a: {b: [1, {c: 2}]}\n"))
t.is(count(), before + 4, "four collections, four companions")
t.is(select("#", yaml.mark(tmp.a.b[2], "c")), 4, "mark with key position")
tmp = nil
collectgarbage(); collectgarbage()
t.is(count(), before, "companions collected with their tables")

-- refusals
fails("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a' %(first at line 1 column 1%)", "duplicate key")
fails("x:\n  a: 1\n  a: ~\n", "t.yaml:3:3: duplicate key 'a'", "duplicate key with a null value")
fails("{a: 1, a: 2}", "duplicate key", "duplicate key in a flow mapping")
fails("a: &x 1\nb: *x\n", "t.yaml:1:4: aliases are not supported", "anchor")
fails("a: &x [1]\n", "aliases are not supported", "anchor on a sequence")
fails("a: *x\n", "aliases are not supported", "alias alone")
fails("---\na: 1\n---\nb: 2\n", "t.yaml:3:1: multiple documents are not supported", "second document")
fails("? [a]\n: 1\n", "mapping keys must be scalars", "sequence as key")
fails("? {a: 1}\n: 1\n", "mapping keys must be scalars", "mapping as key")
fails("a: [1\n", "t.yaml:2:1: did not find expected ',' or ']' %(while parsing a flow sequence", "syntax error position and context")
fails("a: 1\n b: 2\n", "t.yaml:2:3: mapping values are not allowed", "bad indentation")
fails("a: 'x\n", "found unexpected end of stream", "unterminated quote")
fails("a: \255\n", "invalid leading UTF%-8 octet", "invalid UTF-8")
fails("a: \t\255", "^my%.yaml:1:", "chunkname is used", "my.yaml")
local v, msg = yaml.load("a: [")
t.like(msg, "^yaml:%d+:%d+: ", "default chunkname")
t.is(v, nil, "default chunkname: nil")
t.ok(yaml.load(string.rep("[", 64) .. string.rep("]", 64)) ~= nil, "depth 64 loads")
fails(string.rep("[", 65) .. string.rep("]", 65), "t.yaml:1:65: nesting deeper than 64", "depth 65")
fails(string.rep("a", 1024 * 1024 + 1), "input too large %(1048577 bytes, limit 1048576%)", "size limit")
t.ok(yaml.load("a: " .. string.rep("b", 1024 * 1024 - 3)) ~= nil, "exactly 1 MiB loads")
t.ok(not pcall(yaml.load), "load without text raises")
t.ok(not pcall(yaml.load, "a: 1", {}), "bad chunkname raises")

-- many loads: parser state is freed (run under ASan to check)
for i = 1, 200 do
  assert(yaml.load("k" .. i .. ": [1, {x: y}]\n"))
  assert(not yaml.load("k: [\n"))
end
t.ok(true, "200 good and 200 bad loads")

t.done()
