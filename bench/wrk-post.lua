-- wrk-post.lua - wrk script that POSTs one body file as application/json and prints a machine-readable summary line.
-- Usage: wrk -t2 -c16 -d10s --latency -s bench/wrk-post.lua URL -- BODYFILE
--    or: BODY=BODYFILE wrk ... -s bench/wrk-post.lua URL
-- The body is read once per wrk thread, before the run; every request is the same.

local function read_all(path)
   local f = assert(io.open(path, "rb"), "wrk-post.lua: cannot open body file " .. tostring(path))
   local data = f:read("*a")
   f:close()
   return data
end

function init(args)
   local path = args[1] or os.getenv("BODY")
   if not path then
      error("wrk-post.lua: give the body file as `-- FILE` or in $BODY")
   end
   wrk.method = "POST"
   wrk.body = read_all(path)
   wrk.headers["Content-Type"] = "application/json"
end

-- One line for bench-service.sh to parse: totals, and latency percentiles in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRKRESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d bytes=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
