-- GET BENCH_PATH, with BENCH_TOKEN as the bearer token when it is set.
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.path = os.getenv("BENCH_PATH")

dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
