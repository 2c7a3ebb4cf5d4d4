-- GET /rooms/{code} for random well-formed codes: with 26^10 possible codes, none exists.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

local function random_code()
   local letters = {}
   for i = 1, 10 do
      letters[i] = string.char(96 + math.random(26))
   end
   local s = table.concat(letters)
   return s:sub(1, 3) .. "-" .. s:sub(4, 7) .. "-" .. s:sub(8, 10)
end

function init(args)
   math.randomseed(os.time() * 100 + thread_index)
end

function request()
   return wrk.format("GET", "/rooms/" .. random_code())
end
