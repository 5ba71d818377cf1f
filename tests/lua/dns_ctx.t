-- dns_ctx.t: ctx:dig (lua/runbook/prim/dns.lua) through the choke point, against a private
-- dnsmasq on 127.0.0.34 named in the inventory: trace summary and detail, per-call overrides,
-- error codes passed through, option checks.
local t = require "tap"
local fx = require("netfix").new("dnsctx")
local context = require "runbook.context"
local inventory = require "runbook.inventory"

local function body()
  local port = fx:dnsmasq { "--local=/test/", "--local-ttl=300",
    "--mx-host=example.test,mx.example.test,10", "--host-record=mx.example.test,127.0.0.10" }
  local other = fx:dnsmasq { "--local=/test/", "--local-ttl=60", "--host-record=mx.example.test,127.0.0.77" }
  local inv = assert(inventory.validate { dns = { server = fx.ADDR, port = port, timeout = 2 } })
  local events = {}
  local ctx = context.new { inventory = inv, trace = true, sinks = { function(ev) events[#events + 1] = ev end } }

  local r = ctx:dig("example.test", "MX")
  t.ok(r and r.answers[1].exchange == "mx.example.test.", "ctx:dig MX through the inventory server")
  local ev = events[#events]
  t.is(ev and ev.op, "dns.query", "one call event dns.query")
  t.is(ev and ev.summary, "MX example.test -> 10 mx.example.test. (ttl 300)", "trace summary line")
  t.like(ev and ev.detail or "", "^dig @127%.0%.0%.34 %-p " .. port .. " MX example%.test\n", "detail: the dig command")
  t.like(ev and ev.detail or "", "example%.test%.\t300\tIN\tMX\t10 mx%.example%.test%.", "detail: the answer section")

  r = ctx:dig("mx.example.test")
  t.is(r and r.answers[1].address, "127.0.0.10", "type defaults to A")
  r = ctx:dig("mx.example.test", "a", { port = other })
  t.is(r and r.answers[1].address, "127.0.0.77", "opts.port overrides the inventory")
  t.is(events[#events].summary, "A mx.example.test -> 127.0.0.77 (ttl 60)", "summary of an A answer")

  r = ctx:dig("mx.example.test", "TXT")
  t.ok(r and r.nodata, "nodata passes through as success")
  t.like(events[#events].summary, "no TXT record", "nodata summary")

  local res, msg, code = ctx:dig("nope.example.test", "A")
  t.ok(res == nil and code == "nxdomain", "nxdomain passes through")
  t.is(events[#events].outcome, "nxdomain", "event outcome is the code")
  t.like(events[#events].detail, "NXDOMAIN", "detail records the failure")

  local ips = ctx:dig_addresses("mx.example.test")
  t.is(ips and ips[1], "127.0.0.10", "dig_addresses")

  t.ok(not pcall(ctx.dig, ctx, "example.test", "MX", { sever = "127.0.0.34" }), "unknown option raises")
  t.ok(not pcall(ctx.dig, ctx, 42), "a non-string name raises")

  -- untraced run: no detail leaves the context
  local quiet = {}
  local ctx2 = context.new { inventory = inv, sinks = { function(e) quiet[#quiet + 1] = e end } }
  ctx2:dig("example.test", "MX")
  t.ok(quiet[1] and quiet[1].detail == nil and quiet[1].summary, "without --trace: summary, no detail")
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
