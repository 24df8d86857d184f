-- POST /api/devices/{id}/commands: TOTAL text commands, round-robin over a fleet of devices.
-- usage: wrk -t T -c C -d MAX -s commands.lua BASE_URL -- TOKEN IDS_FILE TOTAL T DONE_PREFIX TAG
-- IDS_FILE: one device id per line. Thread k takes every T-th device and its share of TOTAL
-- (so TOTAL = devices x n gives every device exactly n commands), posted round-robin over its
-- devices; the text is "TAG <n>" with n counting that device's commands from 1. Once its share
-- is issued it sends GET /health fillers; when every command has been answered it creates the
-- file DONE_PREFIX.<k> and stops (bench/commands.sh then ends wrk). The fillers are paced
-- (delay()) so that a thread done early does not take CPU from one still posting.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local devices, headers, quota, issued, tag, done_file = {}, nil, 0, 0, "", nil
-- wrk calls request() once on thread 0's state after init() to check the request (wrk.c,
-- script_verify_request); that one is never sent, so it must not use up a command
local verifying = false
answered, accepted, statuses = 0, 0, {}

function init(args)
  local token, file, total, nthreads = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  done_file = args[5] .. "." .. id
  tag = args[6] or "bench"
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then devices[#devices + 1] = line end
    i = i + 1
  end
  verifying = id == 0
  quota = math.floor(total / nthreads) + ((id < total % nthreads) and 1 or 0)
  if #devices == 0 then quota = 0 end
  headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if quota == 0 then
    local f = io.open(done_file, "w")
    if f then f:close() end
  end
end

function request()
  if verifying or issued >= quota then
    verifying = false
    return wrk.format("GET", "/health")
  end
  local n = #devices
  local dev = devices[issued % n + 1]
  local seq = math.floor(issued / n) + 1
  issued = issued + 1
  return wrk.format("POST", "/api/devices/" .. dev .. "/commands", headers,
    '{"kind":"text","text":"' .. tag .. " " .. seq .. '"}')
end

function delay()
  if issued >= quota then return 50 end
  return 0
end

function response(status, headers, body)
  -- /health fillers answer 200; a command answers 202 (or an error)
  if status == 200 then return end
  answered = answered + 1
  if status == 202 then accepted = accepted + 1 end
  statuses[status] = (statuses[status] or 0) + 1
  if answered == quota then
    local f = io.open(done_file, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local a, ok, by = 0, 0, {}
  for _, t in ipairs(threads) do
    a = a + (t:get("answered") or 0)
    ok = ok + (t:get("accepted") or 0)
    for s, c in pairs(t:get("statuses") or {}) do by[s] = (by[s] or 0) + c end
  end
  local keys, parts = {}, {}
  for s in pairs(by) do keys[#keys + 1] = s end
  table.sort(keys)
  for _, s in ipairs(keys) do parts[#parts + 1] = s .. ":" .. by[s] end
  io.write(string.format("command posts: %d answered, %d accepted (202) (by status %s)\n", a, ok,
    table.concat(parts, " ")))
end
