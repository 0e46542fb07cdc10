-- wrk script for scripts/cluster.sh: GET /fib/{n}, a mix of cached and uncached values.
-- Script arguments (defaults in brackets): SMALL_MAX [1000] HEAVY_PERCENT [10] HEAVY_LO [30000]
-- HEAVY_HI [300000]. Each request is, with probability HEAVY_PERCENT %, an n drawn from
-- [HEAVY_LO, HEAVY_HI) (at or above 30000, so the instances share it through Redis; drawn
-- with repeats, so one instance sometimes reads what another computed), else an n in
-- [0, SMALL_MAX] (cached after the first request on each instance).
--
--   wrk -t2 -c32 -d60s --latency -s scripts/load/mixed.lua http://127.0.0.1:PORT -- 1000 10 30000 300000

local threads = 0
local small_max, heavy_pct, heavy_lo, heavy_hi = 1000, 10, 30000, 300000

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  small_max = tonumber(args[1]) or small_max
  heavy_pct = tonumber(args[2]) or heavy_pct
  heavy_lo = tonumber(args[3]) or heavy_lo
  heavy_hi = tonumber(args[4]) or heavy_hi
  math.randomseed(os.time() * 104729 + (id or 0))
end

function request()
  local n
  if math.random() * 100 < heavy_pct then
    n = math.random(heavy_lo, heavy_hi - 1)
  else
    n = math.random(0, small_max)
  end
  return wrk.format("GET", "/fib/" .. n)
end
