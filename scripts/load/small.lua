-- wrk script for scripts/load_test.sh: GET /fib/{n} for n drawn uniformly from 0..MAX
-- (first script argument, default 1000). The load test warms these values first, so every
-- answer comes from the cache: the "99% small, cached" side of measurement 3.
--
--   wrk -t1 -c32 -d20s --latency -s scripts/load/small.lua http://127.0.0.1:PORT -- 1000

local threads = 0
local max_n = 1000

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  max_n = tonumber(args[1]) or max_n
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  return wrk.format("GET", "/fib/" .. math.random(0, max_n))
end
