-- Shared by the pwpush wrk scripts: token files, counters, and one JSON summary line.
local threads = {}
bad, flows = 0, 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- The tokens of `path` that belong to thread `tid` of `nthreads`.
function load_tokens(path, tid, nthreads)
  local toks, i = {}, 0
  for line in io.lines(path) do
    if line ~= "" then
      if i % nthreads == tid then toks[#toks + 1] = line end
      i = i + 1
    end
  end
  if #toks == 0 then error("no tokens in " .. path) end
  return toks
end

function create_request(views)
  local body = string.format(
    '{"push":{"payload":"%s","expire_after_days":1,"expire_after_views":%d}}',
    env("BENCH_PAYLOAD", "bench-payload-0123456789-abcdefghijklmno"), views)
  return wrk.format("POST", "/api/v2/pushes",
    {["Content-Type"] = "application/json", ["Accept"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local b, f = 0, 0
  for _, t in ipairs(threads) do
    b = b + (t:get("bad") or 0)
    f = f + (t:get("flows") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_s":%.2f,"errors":%d,"bad_body":%d,"flows":%d,' ..
    '"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f}\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout, b, f,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
