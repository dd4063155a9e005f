-- An aborted transaction (RSET) leaves nothing behind for the next one on
-- the same connection. Redis holds alias:shop@alias.example.org.
package.path = os.getenv("MILTERTEST_DIR") .. "/?.lua;" .. package.path
local t = require("common")

t.run(function()
  local conn = t.connect()
  t.check(mt.mailfrom(conn, "<news@shop.test>") == nil, "MAIL 1")
  t.expect(conn, mt.rcptto(conn, "<shop@alias.example.org>"), SMFIR_CONTINUE, "RCPT alias")
  t.check(mt.abort(conn) == nil, "abort")
  t.check(mt.mailfrom(conn, "<news@shop.test>") == nil, "MAIL 2")
  t.expect(conn, mt.rcptto(conn, "<bob@real.example>"), SMFIR_CONTINUE, "RCPT other domain")
  t.check(mt.header(conn, "X-Mailer", "x") == nil, "header")
  t.expect(conn, mt.eom(conn), SMFIR_CONTINUE, "end of message")
  t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<shop@alias.example.org>"), "the aborted alias was deleted")
  t.check(not mt.eom_check(conn, MT_RCPTADD, "alice@real.example"), "the aborted alias's owner was added")
  t.check(not mt.eom_check(conn, MT_HDRDELETE, "X-Mailer"), "headers stripped without an alias")
  mt.disconnect(conn)
end)
