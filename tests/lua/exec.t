local t = require "tap"
local exec = require "runbook.exec"
local r = exec.run({"sh","-c","echo hi; echo err >&2; exit 3"}, {timeout=5})
t.is(r.stdout, "hi\n", "stdout"); t.is(r.stderr, "err\n", "stderr"); t.is(r.status, 3, "status")
local r2, m, c = exec.run({"sleep","10"}, {timeout=0.3}); t.is(c, "timeout", "timeout "..tostring(m))
local r3, m3, c3 = exec.run({"/nonexistent"}, {}); t.is(c3, "notfound", m3)
local r4 = exec.run({"cat"}, {stdin="abc"}); t.is(r4.stdout, "abc", "stdin")
local r5 = exec.run({"sh","-c","yes | head -c 100000"}, {max_output=10}); t.is(#r5.stdout, 10, "cap"); t.ok(r5.truncated, "trunc")
local p = exec.spawn({"sh","-c","seq 1 3"}, {timeout=5}); local s = "" ; while true do local c = p:read(); if not c then break end s = s .. c end
t.is(s, "1\n2\n3\n", "spawn"); t.is(p:close().status, 0, "spawn status")
t.is(exec.stat("/tmp").perms, "1777", "stat")
t.ok(exec.statvfs("/").size_kb > 0, "statvfs")
-- a timeout kills the whole process group, grandchildren included
local mark = os.tmpname(); os.remove(mark)
local _, _, code = exec.run({"sh","-c","(sleep 1; touch '"..mark.."') & sleep 10"}, {timeout=0.3})
t.is(code, "timeout", "group timeout")
require("runbook.core").sleep(1.3)
local f = io.open(mark); t.ok(f == nil, "grandchild killed with the group: no marker file"); if f then f:close(); os.remove(mark) end
-- argv is never a shell: metacharacters are data
local r6 = exec.run({"printf","%s","$(touch /tmp/pwned-exec); `id`; 'q'\n"}, {})
t.is(r6.stdout, "$(touch /tmp/pwned-exec); `id`; 'q'\n", "hostile argument is data")
t.ok(io.open("/tmp/pwned-exec") == nil, "no injection")
t.ok(not pcall(exec.run, {"echo"}, {timout=1}), "unknown option raises")
t.ok(not pcall(exec.run, {"a\0b"}, {}), "NUL in argv raises")
local ap = os.tmpname(); os.remove(ap)
t.ok(exec.append(ap, "x\n", tonumber("600",8)), "append"); t.is(exec.stat(ap).perms, "0600", "append mode 0600"); os.remove(ap)
t.done()
