-- retrieve: GET /api/v2/pushes/<url_token> over a token file (args: FILE NTHREADS); each counts a view.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local toks, i, hdrs

function init(args)
  toks = load_tokens(args[1], tid, tonumber(args[2] or "1"))
  i = 0
  hdrs = {["Accept"] = "application/json"}
end

function request()
  i = i % #toks + 1
  return wrk.format("GET", "/api/v2/pushes/" .. toks[i], hdrs)
end

function response(status, headers, body)
  if status < 400 and (status ~= 200 or not body:find('"payload"', 1, true)) then bad = bad + 1 end
end
