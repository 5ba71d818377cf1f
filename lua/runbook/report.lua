-- runbook.report: a Markdown report of one run, fit to paste into a ticket.
--   report.markdown(events) -> string
-- Built only from the (already masked) events of the run.
local trace = require "runbook.trace"
local M = {}

-- write outcomes where the change was never made (the operator declined; no journal line)
local NOT_MADE = { declined = true, not_journaled = true }

local function code(s) return "`" .. tostring(s):gsub("`", "'") .. "`" end

local function fence(lines)
  return "```\n" .. table.concat(lines, "\n"):gsub("```", "'''") .. "\n```"
end

function M.markdown(events)
  local out = {}
  local function w(s) out[#out + 1] = s or "" end
  local start, verdict, finish
  local steps, findings, changes = {}, {}, {}
  for _, raw in ipairs(events) do
    local ev = trace.clean(raw)   -- control characters from data are shown, never sent to a terminal
    if ev.event == "run.start" then start = ev
    elseif ev.event == "verdict" then finish = ev; verdict = ev.declared and ev or nil
    elseif ev.event == "step.end" then steps[#steps + 1] = ev
    elseif ev.event == "finding" then findings[#findings + 1] = ev
    elseif ev.event == "would" or ev.event == "write" then changes[#changes + 1] = ev end
  end
  start = start or { runbook = "?", run = "?" }
  w(("# runbook %s — run %s"):format(start.runbook, start.run))
  w()
  w(("- started: %s"):format(start.time or "?"))
  w(("- mode: %s"):format(start.apply and "apply" or "dry run"))
  if start.arg_list and #start.arg_list > 0 then w("- arguments: " .. code(table.concat(start.arg_list, " "))) end
  if start.sha256 then w("- runbook sha256: " .. code(start.sha256)) end
  if start.inventory then w("- inventory: " .. code(start.inventory)) end
  w()
  if verdict then
    w("## Verdict")
    w()
    w(("**%s**%s%s"):format(verdict.status:upper(), verdict.hop and (" — hop " .. code(verdict.hop)) or "",
      verdict.cause and (", cause " .. code(verdict.cause)) or ""))
    w()
    if verdict.message then w(verdict.message); w() end
    if verdict.evidence and #verdict.evidence > 0 then
      local l = {}
      for _, e in ipairs(verdict.evidence) do l[#l + 1] = trace.evidence_line(e) end
      w("Evidence:"); w(); w(fence(l)); w()
    end
    if verdict.fix then w("Fix (a dry run unless --apply is added):"); w(); w(fence { verdict.fix }); w() end
  end
  if #findings > 0 then
    w("## Findings")
    w()
    for _, f in ipairs(findings) do
      w(("- **%s**%s%s: %s"):format(f.severity:upper(), f.cause and (" " .. code(f.cause)) or "",
        f.hop and (" at " .. code(f.hop)) or "", f.message))
      if f.evidence and #f.evidence > 0 then
        local l = {}
        for _, e in ipairs(f.evidence) do l[#l + 1] = trace.evidence_line(e) end
        w(""); w(fence(l):gsub("\n", "\n  "):gsub("^", "  "))
      end
      if f.fix then w("  - fix: " .. code(f.fix)) end
    end
    w()
  end
  if #changes > 0 then
    w("## Changes")
    w()
    for _, c in ipairs(changes) do
      local what = c.event == "would" and "would run"
        or (NOT_MADE[c.outcome] and ("not applied (" .. tostring(c.outcome) .. ")"))
        or ("applied (" .. tostring(c.outcome) .. ")")
      w(("- %s %s on %s: %s"):format(what, code(c.op), c.host or "local", c.target or ""))
      if c.error then w("  - error: " .. code(c.error)) end
      if c.before ~= nil or c.after ~= nil then
        w(("  - %s -> %s"):format(code(trace.show_value(c.before)), code(trace.show_value(c.after))))
      end
      if c.detail then w("  - " .. code(c.detail)) end
    end
    w()
  end
  w("## Steps")
  w()
  w("| step | status | time |")
  w("|---|---|---|")
  for _, s in ipairs(steps) do
    w(("| %s | %s | %.2fs |"):format(s.step, s.status .. (s.reason and s.status == "skipped" and (" (" .. s.reason .. ")") or ""),
      (s.ms or 0) / 1000))
  end
  w()
  if finish then
    w(("Finished in %.2fs with %d primitive call(s); exit code %d."):format((finish.ms or 0) / 1000,
      finish.calls or 0, finish.exit))
  end
  return table.concat(out, "\n") .. "\n"
end

return M
