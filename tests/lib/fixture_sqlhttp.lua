-- fixture_sqlhttp.lua: private throwaway servers on 127.0.0.32 for the sql and http tests, and
-- the lab's facts. Everything started here is stopped by F.cleanup() (F.run does it for you).
--   F.run(t, body)           pcall(body); cleanup; a raise becomes a failed test; t.done()
--   F.mariadb([tls])         -> {host, port, user, password, password_file, database, sock, ca_file}
--   F.httpd(mode)            -> port of fixture_httpd.py (mode nil | "silent" | "full")
--   F.lab()                  -> table of `tests/lab/lab env` facts after `lab up`, or nil, why
--   F.sh(cmd)                -> stdout, ok   (trusted test code only)
local F = {}
local root = os.getenv("RUNBOOK_ROOT") or "."
local tmp = ("/tmp/runbook-test-sqlhttp-%d-%d"):format(os.time(), math.random(1, 1e9))
local pids, dirs = {}, {}

function F.sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
F.read_file = read_file

function F.mariadb(tls)
  local dir = tmp .. "-db" .. (#dirs + 1)
  dirs[#dirs + 1] = dir
  local out, ok = F.sh(q(root .. "/tests/lib/fixture_mariadb.sh") .. " start " .. q(dir) ..
    (tls and " tls" or "") .. " 2>&1")
  if not ok then error("private mariadbd did not start: " .. out, 2) end
  local e = {}
  for k, v in out:gmatch("([%u_]+)=([^\n]*)") do e[k] = v end
  return { host = "127.0.0.32", port = math.tointeger(tonumber(e.PORT)), user = e.USER,
           password = read_file(e.PASSWORD_FILE), password_file = e.PASSWORD_FILE,
           database = e.DATABASE, sock = e.SOCK, dir = dir, ca_file = e.CA_FILE }
end

function F.httpd(mode)
  local n = #pids + 1
  local log = ("%s-httpd%d.out"):format(tmp, n)
  local pidf = log .. ".pid"
  os.execute(("/usr/bin/python3 %s 127.0.0.32 0 %s >%s 2>&1 & echo $! >%s"):format(
    q(root .. "/tests/lib/fixture_httpd.py"), mode or "", q(log), q(pidf)))
  local pid = (read_file(pidf) or ""):match("%d+")
  pids[#pids + 1] = { pid = pid, files = { log, pidf } }
  for _ = 1, 100 do
    local port = (read_file(log) or ""):match("ready (%d+)")
    if port then return math.tointeger(tonumber(port)) end
    os.execute("sleep 0.05")
  end
  error("fixture_httpd did not start: " .. tostring(read_file(log)), 2)
end

function F.lab()
  return require("rblab").up()
end

function F.cleanup()
  for _, p in ipairs(pids) do
    if p.pid then os.execute("kill " .. p.pid .. " 2>/dev/null") end
    for _, f in ipairs(p.files) do os.remove(f) end
  end
  pids = {}
  for _, d in ipairs(dirs) do
    os.execute(q(root .. "/tests/lib/fixture_mariadb.sh") .. " stop " .. q(d) .. " >/dev/null 2>&1")
  end
  dirs = {}
end

function F.run(t, body)
  local ok, err = xpcall(body, debug.traceback)
  F.cleanup()
  if not ok then
    t.ok(false, "test body raised")
    t.diag(err)
  end
  t.done()
end

return F
