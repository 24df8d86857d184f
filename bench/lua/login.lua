-- POST /auth/login with one fixed account.
-- usage: wrk -t T -c C -s login.lua URL/auth/login -- IDENTIFIER PASSWORD
-- (identifier and password must not need JSON escaping: bench/run.sh uses [A-Za-z0-9_]).
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"identifier":"' .. args[1] .. '","password":"' .. args[2] .. '"}'
end
