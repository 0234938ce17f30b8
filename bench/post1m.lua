-- wrk script for the 1 MiB upload run: every request POSTs the same 1 MiB body to /echo.
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
