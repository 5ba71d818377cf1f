-- rbremedy.lua: the remedy lifecycle as the lab tests check it (tests/lua/remedies.t,
-- tests/lua/remedies11.t): a dry run shows the change and changes nothing, --apply --yes repairs,
-- verifies and journals, a second --apply is a clean no-op; faults are healed whatever happened.
-- Depends on: rblab (a test that already holds the lab's lock), tap.
local lab = require "rblab"
local t = require "tap"

local M = {}

-- esc(s) -> s with Lua pattern magic escaped
function M.esc(s) return (s:gsub("%p", "%%%0")) end

-- with_fault(name, fn): fn runs with the fault active; the fault is healed even if fn raises
function M.with_fault(name, fn)
  local f = lab.lab("fault", name)
  if not t.ok(f.status == 0, "lab fault " .. name) then t.diag(f.all) end
  local ok, err = pcall(fn)
  if not ok then t.ok(false, name .. ": test body raised: " .. tostring(err)) end
  local h = lab.lab("heal", name)
  if not t.is(h.status, 0, "lab heal " .. name) then t.diag(h.all) end
end

-- cycle(o) -> dry, apply, again (results of the binary). The common shape: dry run (exit 1,
-- shows every pattern of o.shows), state unchanged (o.state()), apply (exit 0), repaired
-- (o.fixed()), one audit line (o.audit_lines), a second apply is a no-op (exit 0, no audit line).
function M.cycle(o)
  local rb = lab.rb
  local before = o.state()
  local dry = rb(o.args, { env = o.env })
  if not t.is(dry.status, 1, o.name .. ": dry run on the faulty lab exits 1") then t.diag(dry.all) end
  for _, p in ipairs(o.shows) do t.like(dry.stdout, p, o.name .. ": dry run shows " .. p) end
  t.like(dry.stdout, "WOULD ", o.name .. ": dry run has a would-record")
  t.is(o.state(), before, o.name .. ": dry run changed nothing (" .. tostring(before) .. ")")
  t.is(#lab.audit(dry.run_id), 0, o.name .. ": dry run journals nothing")

  local args = {}
  for _, a in ipairs(o.args) do args[#args + 1] = a end
  args[#args + 1] = "--apply"
  args[#args + 1] = "--yes"
  local ap = rb(args, { env = o.env })
  if not t.is(ap.status, 0, o.name .. ": --apply --yes repairs and verifies (exit 0)") then t.diag(ap.all) end
  t.like(ap.stdout, "APPLIED%(ok%)", o.name .. ": the change was applied")
  t.like(ap.stdout, "VERDICT: HEALTHY", o.name .. ": verified healthy after the change")
  o.fixed()
  -- each change is journalled twice: the intent before it, the outcome after it
  local journal, intents = {}, 0
  for _, l in ipairs(lab.audit(ap.run_id)) do
    if l.phase == "outcome" then journal[#journal + 1] = l elseif l.phase == "intent" then intents = intents + 1 end
  end
  t.is(#journal, o.audit_lines or 1, o.name .. ": one audit outcome line for the change")
  t.is(intents, #journal, o.name .. ": each outcome line has its intent line")
  if journal[1] then t.is(journal[1].outcome, "ok", o.name .. ": audit line records outcome ok") end

  local again = rb(args, { env = o.env })
  if not t.is(again.status, 0, o.name .. ": a second --apply is a clean no-op (exit 0)") then t.diag(again.all) end
  t.like(again.stdout, "nothing to", o.name .. ": second run says there is nothing to do")
  t.is(#lab.audit(again.run_id), 0, o.name .. ": the no-op journals nothing")
  return dry, ap, again
end

return M
