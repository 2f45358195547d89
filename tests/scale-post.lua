-- tests/scale-post.lua - wrk script of tests/scale-test.sh: POSTs the JSON file named by $SCALE_BODY and prints one SUMMARY line for the script to parse.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("SCALE_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "SUMMARY requests=%d seconds=%.2f connect=%d read=%d write=%d status=%d timeout=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
        summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
