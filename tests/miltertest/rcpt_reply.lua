-- One RCPT, checked against the expected kind of answer.
--   RCPT=<address>  EXPECT=continue|reply
package.path = os.getenv("MILTERTEST_DIR") .. "/?.lua;" .. package.path
local t = require("common")

t.run(function()
  local conn = t.connect()
  local rcpt, expect = os.getenv("RCPT"), os.getenv("EXPECT")
  t.check(mt.mailfrom(conn, "<news@shop.test>") == nil, "MAIL")
  local want = (expect == "continue") and SMFIR_CONTINUE or SMFIR_REPLYCODE
  t.expect(conn, mt.rcptto(conn, rcpt), want, "RCPT " .. rcpt)
  mt.disconnect(conn)
end)
