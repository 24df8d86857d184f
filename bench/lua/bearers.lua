-- GET with many users' access tokens: every request another user's, round robin.
-- usage: wrk -t T -c C -s bearers.lua URL -- TOKENS_FILE
-- TOKENS_FILE holds one access token per line. The requests are formatted once, in init(); each
-- thread starts at its own offset, so the threads' requests interleave users rather than repeat
-- one another's order.

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local reqs, n, i = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then
      n = n + 1
      reqs[n] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  assert(n > 0, "bearers.lua: no tokens in " .. args[1])
  i = (id or 0) * 7 % n
end

function request()
  i = i % n + 1
  return reqs[i]
end
