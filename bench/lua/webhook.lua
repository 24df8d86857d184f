-- POST /billing/webhook with pre-signed Stripe deliveries, each sent exactly once.
-- usage: wrk -t T -c C -s webhook.lua URL/billing/webhook -- EVENTS_FILE T
-- EVENTS_FILE: "<Stripe-Signature>\t<body>" per line (bench/webhook_events.py). Each thread
-- takes every T-th line. Once a thread runs out it sends GET /health instead (counted as
-- "starved"), so no event is ever delivered twice.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local events, head = {}, 1
ok, failed, starved = 0, 0, 0

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      events[#events + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
    end
    i = i + 1
  end
end

function request()
  local e = events[head]
  if not e then
    starved = starved + 1
    return wrk.format("GET", "/health")
  end
  events[head] = nil
  head = head + 1
  return wrk.format("POST", nil,
    { ["Content-Type"] = "application/json; charset=utf-8", ["Stripe-Signature"] = e[1] }, e[2])
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else failed = failed + 1 end
end

function done(summary, latency, requests)
  local o, f, s = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + (t:get("ok") or 0)
    f = f + (t:get("failed") or 0)
    s = s + (t:get("starved") or 0)
  end
  io.write(string.format("webhook deliveries: %d answered 200, %d not, %d health fillers after the events ran out\n", o - s, f, s))
end
