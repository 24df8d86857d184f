-- bench/lua/probe.lua — a fixed-rate prober for wrk (Debian has no wrk2): every connection waits
-- CONNECTIONS / RATE seconds before each request, so `wrk -t1 -cCONNECTIONS -s probe.lua URL --
-- RATE CONNECTIONS` sends about RATE requests/s in total, whatever the server's speed. Latency
-- is measured from send to answer; spreading the rate over many connections (bench/run.sh uses
-- 20 at 200/s: one request per connection every 100 ms) keeps one slow answer from holding the
-- others back. The achieved rate is wrk's Requests/sec.
local interval_ms = 100

function init(args)
  local rate = tonumber(args[1] or "200")
  local conns = tonumber(args[2] or "20")
  interval_ms = 1000 * conns / rate
end

function delay()
  return interval_ms
end
