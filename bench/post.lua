-- POST /rooms without a body (the body is optional), as one host per wrk thread.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

local request_text

local function random_uuid4()
   local hex = string.format("%08x%04x%04x%04x%08x%04x", math.random(0, 0xffffffff), math.random(0, 0xffff),
      math.random(0, 0x0fff) + 0x4000, math.random(0, 0x3fff) + 0x8000, math.random(0, 0xffffffff),
      math.random(0, 0xffff))
   return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-" .. hex:sub(13, 16) .. "-" .. hex:sub(17, 20) .. "-"
      .. hex:sub(21, 32)
end

function init(args)
   math.randomseed(os.time() * 100 + thread_index)
   request_text = wrk.format("POST", "/rooms", { ["X-User-Id"] = random_uuid4() })
end

function request()
   return request_text
end
