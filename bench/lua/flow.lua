-- flow: create a one-view push, then retrieve it once (flows = successful retrieves).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local create_req, hdrs
local q, qh, qt = {}, 1, 0

function init(args)
  create_req = create_request(1)
  hdrs = {["Accept"] = "application/json"}
end

function request()
  if qh <= qt then
    local tok = q[qh]
    q[qh] = nil
    qh = qh + 1
    return wrk.format("GET", "/api/v2/pushes/" .. tok, hdrs)
  end
  return create_req
end

function response(status, headers, body)
  if status == 201 then
    local tok = body:match('"url_token"%s*:%s*"([^"]+)"')
    if tok then qt = qt + 1; q[qt] = tok else bad = bad + 1 end
  elseif status == 200 then
    if body:find('"payload"', 1, true) then flows = flows + 1 else bad = bad + 1 end
  elseif status < 400 then
    bad = bad + 1
  end
end
