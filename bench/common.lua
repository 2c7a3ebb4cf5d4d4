-- Shared by the scenario scripts (each loads it with dofile): thread numbering, reading room codes,
-- and the one result line that bench/run.py parses.

local threads = {}

-- Runs in wrk's main Lua state, once per thread before its init(): numbers the threads so each can
-- take its own share of the codes.
function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

-- Lines first .. first + count - 1 of `path`, keeping every `stride`-th one from `offset`: with
-- offset = thread_index and stride = thread count, no two threads ever request the same code.
function load_codes(path, first, count, offset, stride)
   local codes, line_no = {}, 0
   for line in io.lines(path) do
      if line_no >= first + count then
         break
      end
      if line_no >= first and (line_no - first) % stride == offset then
         codes[#codes + 1] = line
      end
      line_no = line_no + 1
   end
   assert(#codes > 0, "no room codes read from " .. path)
   return codes
end

-- Pre-formatted GET requests, one per code: formatting per request would cost wrk CPU that the
-- server under test shares on a small machine.
function get_requests(codes)
   local requests = {}
   for i, code in ipairs(codes) do
      requests[i] = wrk.format("GET", "/rooms/" .. code)
   end
   return requests
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d non2xx=%d socket_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
      e.status, e.connect + e.read + e.write + e.timeout))
end
