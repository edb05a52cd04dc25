-- POST /resources with a fresh request_id and name each time (one resource per request).
-- Environment: BENCH_PATH, BENCH_TOKEN, BENCH_FLAVOR, BENCH_IMAGE, BENCH_RUN (a number unique to the run).
local path = os.getenv("BENCH_PATH")
local flavor = os.getenv("BENCH_FLAVOR")
local image = os.getenv("BENCH_IMAGE")
local run = tonumber(os.getenv("BENCH_RUN"))
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
                 ["Content-Type"] = "application/json"}
local next_thread = 0
local counter = 0

function setup(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
end

function request()
  counter = counter + 1
  local rid = string.format("%08x-%04x-4000-8000-%012x", run, thread_no, counter)
  local body = string.format(
    '{"request_id":"%s","resources":[{"friendly_name":"w%x-%x-%x","flavor_id":"%s","disk_image_id":"%s"}]}',
    rid, run, thread_no, counter, flavor, image)
  return wrk.format("POST", path, headers, body)
end

dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
