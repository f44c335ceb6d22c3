-- wrk script for bench/serve_load.sh: POST /{index}/_search with neural_sparse bodies read from
-- the file in $NSPARSE_LOAD_BODIES (one JSON body per line), cycling through them; counts
-- non-2xx responses per thread and prints one summary line.
local index = os.getenv("NSPARSE_LOAD_INDEX")
local bodies = {}
for line in io.lines(os.getenv("NSPARSE_LOAD_BODIES")) do
  bodies[#bodies + 1] = line
end

local threads = {}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

local next_body = 1
non2xx = 0
function init(args)
  -- Threads start at different queries so they do not hit the same one in lockstep.
  next_body = (id * 37) % #bodies + 1
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/" .. index .. "/_search", headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f qps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, bad, errors.connect, errors.read, errors.write, errors.timeout))
end
