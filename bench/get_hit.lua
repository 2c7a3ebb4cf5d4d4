-- GET /rooms/{code}, cycling through rooms the server has already cached.
-- Arguments: codes file, how many of its first lines are cached rooms.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

local requests, next_index

function init(args)
   requests = get_requests(load_codes(args[1], 0, tonumber(args[2]), 0, 1))
   -- Threads start at different places so they do not request the same room in lockstep.
   next_index = (thread_index * 997) % #requests + 1
end

function request()
   local text = requests[next_index]
   next_index = next_index % #requests + 1
   return text
end
