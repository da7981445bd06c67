-- create: POST /api/v2/pushes (40-byte payload, 1 day, 5 views); expects 201 + url_token.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local req

function init(args) req = create_request(5) end
function request() return req end

function response(status, headers, body)
  if status < 400 and (status ~= 201 or not body:find('"url_token"', 1, true)) then bad = bad + 1 end
end
