-- POST /auth/refresh keeping real token chains.
-- usage: wrk -t T -c C -s refresh.lua URL/auth/refresh -- TOKENS_FILE T
-- TOKENS_FILE holds one refresh token per line (one login session each, >= C + T of them).
-- Each thread gets every T-th token as its own pool. request() takes a token from the pool;
-- response() puts the rotated token from {"refreshToken":"..."} back, so every token is sent
-- exactly once and no two requests ever race on one token. (wrk calls request() once on
-- thread 0 before starting, to verify it: that swallows one token, hence the spare per thread.)

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local pool, head, tail = {}, 1, 0
lost, starved, rotated = 0, 0, 0

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == id then
        tail = tail + 1
        pool[tail] = line
      end
      i = i + 1
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local token
  if head <= tail then
    token = pool[head]
    pool[head] = nil
    head = head + 1
  else
    starved = starved + 1
    token = "no-token-left"
  end
  return wrk.format("POST", nil, nil, '{"refreshToken":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body and body:match('"refreshToken"%s*:%s*"([^"]+)"')
  if status == 200 and token then
    tail = tail + 1
    pool[tail] = token
    rotated = rotated + 1
  else
    lost = lost + 1
  end
end

function done(summary, latency, requests)
  local l, s, r = 0, 0, 0
  for _, t in ipairs(threads) do
    l = l + (t:get("lost") or 0)
    s = s + (t:get("starved") or 0)
    r = r + (t:get("rotated") or 0)
  end
  io.write(string.format("refresh chains: %d rotations, %d broken (non-200 / no token), %d requests without a token\n", r, l, s))
end
