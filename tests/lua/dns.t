-- dns.t: runbook.dns (src/ldns.c) against real dnsmasq instances on 127.0.0.34:
-- every record type with its TTL, NXDOMAIN, nodata, REFUSED, a real SERVFAIL (a validating
-- dnsmasq in front of an unsigned zone: DNSSEC BOGUS), a server that never answers (timeout),
-- a port nobody listens on, TCP, and the argument checks. Nothing leaves 127.0.0.34.
local t = require "tap"
local fx = require("netfix").new("dns")
local dns = require "runbook.dns"
local S = fx.ADDR

local function body()
  local port = fx:dnsmasq {
    "--local=/test/", "--local-ttl=300",
    "--mx-host=example.test,mx.example.test,10", "--mx-host=example.test,mx2.example.test,20",
    "--host-record=mx.example.test,127.0.0.10", "--host-record=mx2.example.test,127.0.0.11",
    "--host-record=v6.example.test,fd00::25",
    "--txt-record=example.test,v=spf1 ip4:127.0.0.10 -all,second string",
    "--ptr-record=10.0.0.127.in-addr.arpa,mx.example.test",
    "--ptr-record=5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa,v6.example.test",
    "--cname=www.example.test,mx.example.test",
    -- more than fits a 1232-byte UDP reply: the server sets TC and the client must retry on TCP
    "--txt-record=big.example.test," .. ("a"):rep(250) .. "," .. ("b"):rep(250) .. "," .. ("c"):rep(250)
      .. "," .. ("d"):rep(250) .. "," .. ("e"):rep(250) .. "," .. ("f"):rep(250),
  }
  local function q(name, type, extra)
    local o = { name = name, type = type, server = S, port = port, timeout = 2 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return dns.query(o)
  end

  local r = q("example.test", "MX")
  t.is(r and r.rcode, "NOERROR", "MX: NOERROR")
  t.is(r and #r.answers, 2, "MX: two records")
  table.sort(r.answers, function(a, b) return a.preference < b.preference end)
  t.is(r.answers[1].preference, 10, "MX: preference 10")
  t.is(r.answers[1].exchange, "mx.example.test.", "MX: exchange")
  t.is(r.answers[1].ttl, 300, "MX: ttl from the server")
  t.is(r.answers[2].data, "20 mx2.example.test.", "MX: data in presentation form")
  t.is(r.nodata, false, "MX: not nodata")
  t.is(r.server, S, "server reported")
  t.ok(type(r.ms) == "number" and r.ms >= 0, "ms reported")

  r = q("mx.example.test", "A")
  t.is(r and r.answers[1].address, "127.0.0.10", "A: address")
  r = q("v6.example.test", "AAAA")
  t.is(r and r.answers[1].address, "fd00::25", "AAAA: address")
  r = q("example.test", "TXT")
  t.is(r and r.answers[1].text, "v=spf1 ip4:127.0.0.10 -allsecond string", "TXT: strings joined")
  t.is(r and r.answers[1].strings[2], "second string", "TXT: strings kept apart too")
  r = q("127.0.0.10", "PTR")
  t.is(r and r.qname, "10.0.0.127.in-addr.arpa.", "PTR: IPv4 becomes its in-addr.arpa name")
  t.is(r and r.answers[1].target, "mx.example.test.", "PTR: target")
  r = q("fd00::25", "PTR")
  t.is(r and r.answers[1] and r.answers[1].target, "v6.example.test.", "PTR: IPv6 becomes its ip6.arpa name")
  r = q("www.example.test", "CNAME")
  t.is(r and r.answers[1].target, "mx.example.test.", "CNAME: target")

  r = q("mx.example.test", "TXT")
  t.ok(r and r.nodata == true and #r.answers == 0 and r.rcode == "NOERROR", "nodata: success, no answers, nodata=true")

  local res, msg, code = q("nope.example.test", "A")
  t.ok(res == nil and code == "nxdomain", "NXDOMAIN -> nil, msg, 'nxdomain'")
  t.like(msg, "NXDOMAIN", "NXDOMAIN message says so")

  res, msg, code = q("example.com", "A")
  t.ok(res == nil and code == "refused", "a name outside .test with no upstream -> 'refused'")
  t.like(msg, "REFUSED", "REFUSED message says so")

  -- A real SERVFAIL: a validating resolver (root trust anchor) whose only upstream is an
  -- unsigned private zone; the answer cannot be proven, so it is BOGUS.
  local vport = fx:dnsmasq {
    "--server=" .. S .. "#" .. port, "--dnssec", "--dnssec-check-unsigned",
    "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
  }
  res, msg, code = dns.query { name = "mx.example.test", type = "A", server = S, port = vport, timeout = 3 }
  t.is(code, "servfail", "DNSSEC-bogus answer -> 'servfail'")
  t.like(msg, "SERVFAIL", "SERVFAIL message says so")

  -- Nobody answers: a UDP socket that reads and never replies.
  local silent = fx:peer("udpsilent")
  local t0 = require("runbook.core").now()
  -- 3 tries: a timeout per try would take 15 s; the whole query must end near 5 s (generous
  -- bound 12 s for a loaded machine, still below 15)
  res, msg, code = dns.query { name = "example.test", type = "MX", server = S, port = silent.port, timeout = 5, retries = 2 }
  local took = require("runbook.core").now() - t0
  t.is(code, "timeout", "silent server -> 'timeout'")
  t.ok(took >= 4.9 and took < 12, ("the timeout bounds the whole query, not each try (%.2fs)"):format(took))
  t.like(fx.received(silent), "QUERY.*QUERY.*QUERY", "three UDP tries reached the silent server (retries=2)")

  res, msg, code = dns.query { name = "example.test", server = S, port = fx:free_port(), timeout = 1 }
  t.is(code, "refused", "no server on the port (ICMP port unreachable) -> 'refused'")

  r = q("big.example.test", "TXT")
  t.ok(r and r.tcp == true and #r.answers[1].text == 1500, "truncated UDP reply -> retried over TCP, whole record")

  -- no server: the servers of a resolv.conf (here a private one; tests never use the system's).
  -- The first server never answers, so the second must be asked within the same timeout.
  local rc = fx.dir .. "/resolv.conf"
  local f = assert(io.open(rc, "w"))
  f:write("# private\nnameserver ", S, "\nnameserver ", S, "\n")
  f:close()
  local silent_rc = fx:peer("udpsilent")
  r = dns.query { name = "example.test", type = "MX", resolv_conf = rc, port = port, timeout = 2 }
  t.ok(r and #r.answers == 2, "server=nil: servers read from resolv_conf")
  -- two listed servers that never answer: each is asked (twice: retries=1) within one timeout
  local t1 = require("runbook.core").now()
  -- a budget per server would take 10 s; shared, about 5 s (generous bound 9 s)
  res, msg, code = dns.query { name = "example.test", type = "MX", resolv_conf = rc, port = silent_rc.port, timeout = 5 }
  local took_rc = require("runbook.core").now() - t1
  t.is(code, "timeout", "resolv_conf servers that never answer -> timeout")
  t.ok(took_rc >= 4.9 and took_rc < 9, ("both servers share the one budget (%.2fs)"):format(took_rc))
  local _, nq = fx.received(silent_rc):gsub("QUERY", "")
  t.is(nq, 4, "each of the two servers got two tries")

  r = q("example.test", "MX", { tcp = true })
  t.ok(r and r.tcp == true and #r.answers == 2, "tcp=true: same answer over TCP")

  -- argument checks raise before anything is sent
  t.ok(not pcall(dns.query, { name = "bad name.test", server = S, port = port }), "a name with a space raises")
  t.ok(not pcall(dns.query, { name = "bad\nname.test", server = S, port = port }), "a name with a newline raises")
  t.ok(not pcall(dns.query, { name = "x.test", server = S, port = port, timout = 1 }), "unknown option raises")
  t.ok(not pcall(dns.query, { name = "x.test", type = "ANY", server = S }), "unsupported type raises")
  t.ok(not pcall(dns.query, { name = "x.test", server = "ns.example.test" }), "a server that is not an IP raises")
  local ok, e = pcall(dns.query, { name = "x.test", server = S, timeout = -1 })
  t.ok(not ok and tostring(e):find("timeout"), "negative timeout raises")
end

local ok, err = xpcall(body, debug.traceback)
fx:cleanup()
if not ok then t.ok(false, "test body raised: " .. tostring(err)) end
t.done()
