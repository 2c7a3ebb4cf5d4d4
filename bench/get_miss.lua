-- GET /rooms/{code} for rooms that are in Postgres but not cached: each code is requested once.
-- Arguments: codes file, first line, line count, wrk thread count. The threads split the range;
-- a thread that runs out starts again, and those repeats are cache hits, which run.py detects
-- (the cache then grows by fewer keys than there were requests) and reports.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

local requests, next_index

function init(args)
   local codes = load_codes(args[1], tonumber(args[2]), tonumber(args[3]), thread_index, tonumber(args[4]))
   requests = get_requests(codes)
   next_index = 1
end

function request()
   local text = requests[next_index]
   next_index = next_index % #requests + 1
   return text
end
