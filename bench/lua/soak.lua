-- Memory soak: a fixed mix of routes until TOTAL requests have completed.
-- usage: wrk -t T -c C -d MAX -s soak.lua BASE_URL -- ACCESS_TOKEN TOTAL T DONE_PREFIX
-- Each thread stops itself after TOTAL/T responses and creates the file DONE_PREFIX.<id>;
-- bench/run.sh then sends wrk SIGINT (wrk itself would wait for the whole -d duration).
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs, n, quota, done_file = {}, 0, 0, nil
count, statuses = 0, {}

local function add(weight, method, path, headers, body)
  local r = wrk.format(method, path, headers, body)
  for _ = 1, weight do reqs[#reqs + 1] = r end
end

function init(args)
  local token, total, nthreads = args[1], tonumber(args[2]), tonumber(args[3])
  quota = math.ceil(total / nthreads)
  done_file = args[4] .. "." .. id
  local bearer = { ["Authorization"] = "Bearer " .. token }
  local json = { ["Content-Type"] = "application/json" }
  add(6, "GET", "/health")
  add(4, "GET", "/auth/me", bearer)
  add(3, "GET", "/api/devices", bearer)
  add(1, "GET", "/api/devices/0190f3a0-0000-7000-8000-000000000000", bearer) -- 404
  add(1, "GET", "/api/devices/not-a-uuid", bearer)                         -- 400
  add(1, "GET", "/auth/me", { ["Authorization"] = "Bearer not.a.jwt" })    -- 401
  add(1, "GET", "/health/ready")
  add(1, "GET", "/no/such/route")                                          -- 404
  add(1, "OPTIONS", "/auth/me", { ["Origin"] = "http://localhost:5173",
    ["Access-Control-Request-Method"] = "GET" })                           -- preflight
  add(1, "POST", "/auth/refresh", json, '{"refreshToken":"bogus"}')        -- 401
  add(1, "POST", "/auth/login", json, '{"identifier":42}')                 -- 400
  add(1, "POST", "/auth/register", json, '{"email":')                      -- malformed JSON
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function response(status, headers, body)
  count = count + 1
  statuses[status] = (statuses[status] or 0) + 1
  if count == quota then
    local f = io.open(done_file, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, by = 0, {}
  for _, t in ipairs(threads) do
    total = total + (t:get("count") or 0)
    for s, c in pairs(t:get("statuses") or {}) do by[s] = (by[s] or 0) + c end
  end
  local keys = {}
  for s in pairs(by) do keys[#keys + 1] = s end
  table.sort(keys)
  local parts = {}
  for _, s in ipairs(keys) do parts[#parts + 1] = s .. ":" .. by[s] end
  io.write(string.format("soak responses: %d (by status %s)\n", total, table.concat(parts, " ")))
end
