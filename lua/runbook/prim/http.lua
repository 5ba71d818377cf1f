-- runbook.prim.http: the HTTP APIs of the inventory (`http:`) as a ctx method.
--
--   ctx:http(endpoint, method, path, body, opts)
--     endpoint  name under `http:` in the inventory (base_url, token_env/token_file, timeout,
--               verify, cainfo)
--     method    GET HEAD OPTIONS (reads) | POST PUT PATCH DELETE (writes, gated by the dry run)
--     path      "/api/users" (used as given; must start with "/", no "..", spaces or controls)
--               or a list of segments {"api", "users", email}: each one percent-encoded, so a
--               value from the operator can never add a segment or a query
--     body      a table sent as JSON (Content-Type: application/json), or nil
--     opts      timeout=, query={name=value} (encoded), max_body=, before=path (a GET showing the
--               current state: read in a dry run too, re-read after applying), target=
--   -> {status=, headers=, data=<decoded JSON or nil>, body=<raw text>, ms=}
--    | nil, "HTTP 404: <message from the body>", "http", {status=, data=, body=, headers=}
--    | nil, msg, code (refused timeout unreachable tls http cap, dryrun for a write not applied)
--   A 4xx/5xx is an operational failure here; its response is the 4th return value, so a
--   runbook can tell 404 from 409 (`local r, msg, code, resp = ctx:http(...)`).
--   ctx:url_escape(s) -> s percent-encoded (for building query strings by hand)
--
-- Secrets: the bearer token is registered with ctx:secret; in every body field whose name
-- contains "password", "token" or "secret" (any depth, any case) the value is registered as a
-- secret and shown as "***" in the trace, the dry run and the journal. The request sent is
-- unchanged. Redirects are not followed; TLS is verified unless the inventory says verify: false.
-- A base_url with user:password@ is refused (the inventory refuses it already; this wrapper
-- again, for inventories built in code), so no credential is ever part of a shown URL.
-- Depends on: runbook.http, runbook.json, runbook.call, runbook.inventory.
local http = require "runbook.http"
local json = require "runbook.json"
local call = require "runbook.call"
local inventory = require "runbook.inventory"

local M = {}
M.MAX_BODY = 8 * 1024 * 1024

local METHODS = { GET = "read", HEAD = "read", OPTIONS = "read", POST = "write", PUT = "write",
                  PATCH = "write", DELETE = "write" }
local OPTS = { timeout = "number", query = "table", max_body = "number", before = "any",
               target = "string" }

local function secret_name(k)
  if type(k) ~= "string" then return false end
  local l = k:lower()
  return l:find("password", 1, true) or l:find("token", 1, true) or l:find("secret", 1, true)
end

-- masked(ctx, v) -> a copy of v with secret-named fields replaced by "***" (and registered).
local function masked(ctx, v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return "(cycle)" end
  seen[v] = true
  local out = setmetatable({}, getmetatable(v))
  for k, x in pairs(v) do
    if secret_name(k) and type(x) ~= "table" then
      if type(x) == "string" then ctx:secret(x) end
      out[k] = "***"
    else
      out[k] = masked(ctx, x, seen)
    end
  end
  seen[v] = nil
  return out
end
M.masked = masked

-- path_of(path) -> "/a/b" ; raises on a path that could escape its meaning.
local function path_of(path, level)
  if type(path) == "table" then
    local segs = {}
    for i, s in ipairs(path) do
      if type(s) ~= "string" and type(s) ~= "number" then
        error(("bad argument #3 to 'http' (path segment %d must be a string)"):format(i), level + 1)
      end
      s = tostring(s)
      if s == "" or s == "." or s == ".." then
        error(("bad argument #3 to 'http' (path segment %d is %q)"):format(i, s), level + 1)
      end
      segs[i] = http.escape(s)
    end
    return "/" .. table.concat(segs, "/")
  end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("bad argument #3 to 'http' (path \"/...\" or a list of segments expected)", level + 1)
  end
  if path:find("[%c%s#?\\]") or path:find("/%.%.?/") or path:find("/%.%.?$") then
    error(("bad argument #3 to 'http' (path %q has a space, control, '?', '#', '\\' or dot " ..
           "segment: pass a list of segments and opts.query)"):format(path), level + 1)
  end
  return path
end

local function query_of(q, level)
  if q == nil then return "" end
  local keys = {}
  for k, v in pairs(q) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
      error("http: option 'query' must map names to strings or numbers", level + 1)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = http.escape(k) .. "=" .. http.escape(tostring(q[k])) end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

local function endpoint_of(ctx, name, level)
  if type(name) ~= "string" then error("bad argument #1 to 'http' (endpoint name expected)", level + 1) end
  local e = ctx.inventory.http[name]
  if not e then error(("unknown http endpoint '%s' (not in the inventory)"):format(name), level + 1) end
  return e
end

local function is_json(resp)
  local ct = resp.headers["content-type"] or ""
  return ct:find("json", 1, true) ~= nil
end

-- The short message of an error response: its JSON error/message/detail, else the body start.
local function error_message(resp, data)
  if type(data) == "table" then
    for _, k in ipairs { "error", "message", "detail", "msg" } do
      if type(data[k]) == "string" then return data[k] end
    end
  end
  local b = (resp.body or ""):gsub("%s+", " ")
  if b == "" then return "(empty body)" end
  return #b > 200 and (b:sub(1, 200) .. "...") or b
end

-- request(ctx, e, method, url, bodytext, opts, token) -> response | nil, msg, code, resp
local function request(ctx, e, method, url, bodytext, o, token)
  local headers = { Accept = "application/json" }
  if bodytext then headers["Content-Type"] = "application/json" end
  if token then headers.Authorization = "Bearer " .. token end
  local resp, msg, code = http.request {
    method = method, url = url, headers = headers, body = bodytext,
    timeout = ctx:timeout(o.timeout or e.timeout), connect_timeout = ctx:connect_timeout(),
    verify = e.verify ~= false, cainfo = e.cainfo, max_body = o.max_body or M.MAX_BODY,
  }
  if not resp then return nil, msg, code end
  local data
  if resp.body ~= "" and is_json(resp) then
    local err
    data, err = json.decode(resp.body)
    if data == nil and resp.status < 400 then
      return nil, ("%s %s: invalid JSON in the response: %s"):format(method, url, err), "http"
    end
  end
  local out = { status = resp.status, headers = resp.headers, data = data, body = resp.body,
                ms = resp.ms, transcript = resp.transcript }
  if resp.status >= 400 then
    return nil, ("HTTP %d: %s"):format(resp.status, error_message(resp, data)), "http", out
  end
  return out
end
M.request = request

function M.install(Ctx)
  function Ctx:url_escape(s)
    if type(s) ~= "string" and type(s) ~= "number" then
      error("bad argument #1 to 'url_escape' (string expected)", 2)
    end
    return http.escape(tostring(s))
  end

  function Ctx:http(endpoint, method, path, body, opts)
    local e = endpoint_of(self, endpoint, 2)
    if type(method) ~= "string" or not METHODS[method:upper()] then
      error("bad argument #2 to 'http' (GET, HEAD, OPTIONS, POST, PUT, PATCH or DELETE expected)", 2)
    end
    method = method:upper()
    local p = path_of(path, 2)
    if body ~= nil and type(body) ~= "table" then
      error("bad argument #4 to 'http' (table to send as JSON, or nil)", 2)
    end
    if body ~= nil and (method == "GET" or method == "HEAD") then
      error("bad argument #4 to 'http' (" .. method .. " has no body)", 2)
    end
    local o = opts or {}
    if type(o) ~= "table" then error("bad argument #5 to 'http' (options table expected)", 2) end
    for k, v in pairs(o) do
      local want = OPTS[k]
      if not want then error(("http: unknown option '%s'"):format(tostring(k)), 2) end
      if want ~= "any" and type(v) ~= want then error(("http: option '%s' must be a %s"):format(k, want), 2) end
    end
    if o.timeout and not (o.timeout > 0) then error("http: option 'timeout' must be > 0", 2) end
    local url = e.base_url:gsub("/+$", "") .. p .. query_of(o.query, 2)
    if inventory.url_has_userinfo(e.base_url) then   -- it would be printed with every request
      error(("http: endpoint '%s': user:password@ in base_url is refused (use token_env or token_file)"):format(endpoint), 2)
    end

    local token
    if e.token_env or e.token_file then
      local msg, code
      token, msg, code = inventory.secret(e, "token")
      if not token then return nil, msg, code end
      self:secret(token)
    end
    local bodytext = body ~= nil and json.encode(body) or nil
    local shown = body ~= nil and masked(self, body) or nil
    local detail = method .. " " .. url
    if token then detail = detail .. "\nAuthorization: Bearer ***" end
    if shown ~= nil then detail = detail .. "\nContent-Type: application/json\n\n" .. json.encode(shown) end

    local class = METHODS[method]
    local failed   -- the response of a 4xx/5xx, kept for the 4th return value
    local function fn()
      local r, msg, code, resp = request(self, e, method, url, bodytext, o, token)
      failed = resp
      return r, msg, code
    end
    local spec = {
      family = "http", op = method:lower(), host = endpoint,
      summary_args = { endpoint, method, p },
      detail = detail, fn = fn,
      summarize = function(r) return ("HTTP %d, %d bytes"):format(r.status, #r.body) end,
    }
    if class == "write" then
      spec.target = o.target or (endpoint .. " " .. method .. " " .. p)
      spec.after = shown
      if o.before ~= nil then
        local bp = path_of(o.before, 2)
        local burl = e.base_url:gsub("/+$", "") .. bp
        local function current()
          local r, msg, code, resp = request(self, e, "GET", burl, nil, {}, token)
          if r then return r.data ~= nil and r.data or r.body end
          if resp then return { status = resp.status, error = error_message(resp, resp.data) } end
          return nil, msg, code
        end
        spec.before, spec.verify = current, current
      end
    end
    local r, msg, code = call(self, spec)
    if r == nil and code == "http" and failed then return nil, msg, code, failed end
    return r, msg, code
  end
end

return M
