-- wrk script for scripts/load_test.sh: GET /fib/{n} for distinct random n in [LO, HI)
-- (script arguments, default 1000000 10000000): values nobody asked for before, so each one
-- is computed, the "1% heavy, uncached" side of measurement 3. Thread k (of at most 16)
-- takes n = k (mod 16) and remembers what it sent, so no n repeats within a run.
--
--   wrk -t1 -c2 -d20s --timeout 60s --latency -s scripts/load/heavy.lua URL -- 1000000 10000000

local threads = 0
local lo, hi = 1000000, 10000000
local sent = {}

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  lo = tonumber(args[1]) or lo
  hi = tonumber(args[2]) or hi
  math.randomseed(os.time() * 7919 + (id or 0))
end

function request()
  local lane = ((id or 1) - 1) % 16
  local slots = math.floor((hi - lo) / 16)
  local n
  repeat
    n = lo + math.random(0, slots - 1) * 16 + lane
  until not sent[n]
  sent[n] = true
  return wrk.format("GET", string.format("/fib/%d", n))
end
