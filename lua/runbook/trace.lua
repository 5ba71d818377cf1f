-- runbook.trace: the sinks that turn the context's events into output.
--
-- Events reach sinks only through ctx:emit (runbook.context), which masks every secret first.
-- The text sink shows data, never lets it drive the terminal: control characters in any value
-- (ESC, OSC, BEL, CR, the rest of C0, DEL, and the C1 controls U+0080..U+009F) are shown as
-- escapes (\e, \r, \x07, \u009b); a newline in data starts an indented continuation line.
--   trace.text{out=io.stdout, color=bool, tty=bool, verbose=bool} -> sink  (for people)
--   trace.json{out=io.stdout}                                     -> sink  (JSON Lines, schema 1)
--   trace.collector()                                             -> sink, events (for --report)
-- Depends on: runbook.json.
local M = {}

local C = { reset = "\27[0m", bold = "\27[1m", dim = "\27[2m", red = "\27[31m", green = "\27[32m",
            yellow = "\27[33m", cyan = "\27[36m" }

local MARK = { ok = "ok", warn = "WARN", fail = "FAIL", error = "ERROR", skipped = "skip" }
local COLOR = { ok = "green", warn = "yellow", fail = "red", error = "red", skipped = "dim",
                info = "cyan", healthy = "green", problem = "red", escalate = "yellow" }

local function fmt_ms(ms)
  if not ms then return "" end
  if ms < 1000 then return ("%dms"):format(math.floor(ms + 0.5)) end
  return ("%.2fs"):format(ms / 1000)
end

local function show_value(v)
  if v == nil then return "(none)" end
  if type(v) == "table" then
    local ok, s = pcall(function() return require("runbook.json").encode(v) end)
    return ok and s or tostring(v)
  end
  return tostring(v)
end
M.show_value = show_value

-- change_lines(before, after) -> lines showing the change: "old  ->  new" for short scalar
-- values, a line diff ("- old" / "+ new") when either side spans lines.
function M.change_lines(before, after)
  local b, a = before, after
  if type(b) == "string" and type(a) == "string" and (b:find("\n") or a:find("\n")) then
    local out = {}
    local bl, al = {}, {}
    for l in (b:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do bl[#bl + 1] = l end
    for l in (a:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do al[#al + 1] = l end
    local inb = {}
    for _, l in ipairs(bl) do inb[l] = (inb[l] or 0) + 1 end
    local ina = {}
    for _, l in ipairs(al) do ina[l] = (ina[l] or 0) + 1 end
    for _, l in ipairs(bl) do if not ina[l] then out[#out + 1] = "- " .. l end end
    for _, l in ipairs(al) do if not inb[l] then out[#out + 1] = "+ " .. l end end
    if #out == 0 then out[1] = "(no change)" end
    return out
  end
  return { show_value(b) .. "  ->  " .. show_value(a) }
end

-- evidence item -> one line: "host time source: text"
function M.evidence_line(e)
  if type(e) ~= "table" then return tostring(e) end
  local parts = {}
  if e.host then parts[#parts + 1] = e.host end
  if e.time then parts[#parts + 1] = tostring(e.time) end
  if e.source then parts[#parts + 1] = e.source .. ":" end
  parts[#parts + 1] = e.text or show_value(e.value)
  -- one evidence item is one line, whatever the tool printed
  return (table.concat(parts, " "):gsub("%s*\n%s*", " | "))
end

local NAMED = { ["\27"] = "\\e", ["\r"] = "\\r", ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v" }

-- escape(s) -> s with every control character but newline and tab made visible
local function escape(s)
  s = s:gsub("[\0-\8\11-\31\127]", function(c) return NAMED[c] or ("\\x%02x"):format(c:byte()) end)
  return (s:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end))
end
M.escape = escape

-- clean(v) -> a copy of an event value with every string escaped (keys too)
local function clean(v, depth)
  if type(v) == "string" then return escape(v) end
  if type(v) ~= "table" or depth > 16 then return v end
  local out = {}
  for k, x in next, v do out[clean(k, depth + 1)] = clean(x, depth + 1) end
  return out
end
M.clean = function(v) return clean(v, 0) end

function M.text(opts)
  local out = opts.out or io.stdout
  local color = opts.color
  local tty = opts.tty
  local verbose = opts.verbose
  local progress_shown = false
  local function paint(name, s) return color and (C[name] .. s .. C.reset) or s end
  local function line(s)
    if progress_shown then out:write("\r\27[K"); progress_shown = false end
    -- a newline from data continues the line, indented under it: data never starts a line
    local cont = "\n" .. (s:match("^ *") or "") .. "    "
    out:write((s:gsub("\n", cont)), "\n")
  end
  local function lines(prefix, text)
    for l in (tostring(text) .. "\n"):gmatch("(.-)\n") do line(prefix .. l) end
  end
  local depth = 0
  return function(ev)
    ev = clean(ev, 0)
    local k = ev.event
    local ind = string.rep("  ", depth)
    if k == "run.start" then
      local args = {}
      for _, a in ipairs(ev.arg_list or {}) do args[#args + 1] = a end
      line(paint("bold", ("runbook %s"):format(ev.runbook)) ..
        paint("dim", ("  run %s  %s%s"):format(ev.run, ev.apply and "APPLY" or "dry run",
          #args > 0 and ("  " .. table.concat(args, " ")) or "")))
    elseif k == "step.start" then
      line(ind .. paint("bold", "▶ " .. ev.step) .. (ev.title and paint("dim", "  " .. ev.title) or ""))
      depth = depth + 1
    elseif k == "step.end" then
      depth = math.max(depth - 1, 0)
      ind = string.rep("  ", depth)
      local st = ev.status
      line(ind .. paint(COLOR[st] or "bold", ("%-5s"):format(MARK[st] or st)) .. " " .. ev.step ..
        paint("dim", "  " .. fmt_ms(ev.ms)) .. (ev.reason and st == "skipped" and ("  (" .. ev.reason .. ")") or ""))
      if st == "error" and ev.reason then lines(ind .. "      ", ev.reason) end
    elseif k == "call" then
      local args = ev.args and table.concat((function()
        local t = {}
        for i, a in ipairs(ev.args) do t[i] = tostring(a) end
        return t
      end)(), " ") or ""
      local s = ("%s· %s %s %s %s %s"):format(ind, ev.op, ev.host or "", args, fmt_ms(ev.ms), ev.outcome)
      if ev.summary then s = s .. "  " .. ev.summary end
      if ev.outcome ~= "ok" and ev.error then s = s .. "  " .. ev.error end
      line(ev.outcome == "ok" and paint("dim", s) or paint("yellow", s))
      if verbose and ev.detail then lines(ind .. "    | ", ev.detail) end
    elseif k == "would" or k == "write" then
      -- a declined or unjournalled write never ran; a failed one ran and did not succeed
      local o = tostring(ev.outcome)
      local head = k == "would" and "WOULD"
        or (o == "ok" and "APPLIED(ok)")
        or ((o == "declined" or o == "not_journaled") and ("NOT APPLIED(" .. o .. ")"))
        or ("FAILED(" .. o .. ")")
      line(ind .. paint(k == "would" and "cyan" or (ev.outcome == "ok" and "green" or "red"), head) ..
        (" %s on %s: %s"):format(ev.op, ev.host or "local", ev.target or ""))
      if ev.before ~= nil or ev.after ~= nil then
        for _, l in ipairs(M.change_lines(ev.before, ev.after)) do line(ind .. "      " .. l) end
      end
      if ev.detail then lines(ind .. "      $ ", ev.detail) end
      if ev.error then line(ind .. "      error: " .. ev.error) end
    elseif k == "finding" then
      local sev = ev.severity
      line(ind .. paint(COLOR[sev] or "bold", (MARK[sev] or sev:upper())) ..
        (ev.cause and (" [" .. ev.cause .. "]") or "") .. (ev.hop and (" at " .. ev.hop) or "") .. ": " .. ev.message)
      for _, e in ipairs(ev.evidence or {}) do line(ind .. "      evidence: " .. M.evidence_line(e)) end
      if ev.fix then line(ind .. "      fix: " .. ev.fix) end
    elseif k == "note" then
      line(ind .. (ev.level == "warn" and paint("yellow", "note: ") or "note: ") .. ev.message)
    elseif k == "progress" then
      if tty then
        out:write("\r\27[K", ind, paint("dim", ("… %s (%.1fs)"):format((tostring(ev.message):gsub("\n", " ")), ev.t)))
        progress_shown = true
      end
    elseif k == "verdict" then
      line("")
      if ev.declared then
        line(paint("bold", "VERDICT: ") .. paint(COLOR[ev.status] or "bold", ev.status:upper()) ..
          (ev.hop and ("  hop: " .. ev.hop) or "") .. (ev.cause and ("  cause: " .. ev.cause) or ""))
        if ev.message then line("  " .. ev.message) end
        for _, e in ipairs(ev.evidence or {}) do line("  evidence: " .. M.evidence_line(e)) end
        if ev.fix then line("  fix (dry run first): " .. paint("bold", ev.fix)) end
      end
      local w = ev.would and ev.would > 0 and (", %d change(s) would be made: rerun with --apply"):format(ev.would) or ""
      line(paint("dim", ("done in %s: %d primitive call(s), %d finding(s)%s; exit %d"):format(
        fmt_ms(ev.ms), ev.calls or 0, ev.findings or 0, w, ev.exit)))
      if ev.error then line(paint("red", "error: ") .. ev.error) end
    end
    out:flush()
  end
end

function M.json(opts)
  local out = opts.out or io.stdout
  local json = require "runbook.json"
  return function(ev)
    if ev.transient then return end   -- a terminal-only "now running" line
    out:write(json.encode(ev), "\n")
    out:flush()
  end
end

function M.collector()
  local events = {}
  return function(ev) if not ev.transient then events[#events + 1] = ev end end, events
end

return M
