-- Shared helpers for the miltertest scripts. miltertest exits 1 without a
-- word on a Lua error, so every script runs inside run(), which prints why.
local M = {}

function M.connect()
  local sock = os.getenv("MILTER_SOCKET")
  assert(sock, "MILTER_SOCKET is not set")
  local conn = mt.connect(sock, 20, 0.25)
  assert(conn, "cannot connect to " .. sock)
  return conn
end

function M.check(cond, what)
  if not cond then error(what, 2) end
end

-- Sends one command and checks the milter's answer (SMFIR_* code).
function M.expect(conn, err, want, what)
  M.check(err == nil, what .. ": " .. tostring(err))
  local got = mt.getreply(conn)
  M.check(got == want, string.format("%s: reply %q, expected %q", what, tostring(got), tostring(want)))
end

function M.run(body)
  local ok, err = pcall(body)
  if not ok then
    io.stderr:write("FAIL: " .. tostring(err) .. "\n")
    os.exit(1)
  end
  print("ok")
end

return M
