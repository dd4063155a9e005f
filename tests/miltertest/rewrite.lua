-- A live alias (given in mixed case) is deleted byte for byte as the MTA
-- sent it, its owner added, strip-listed headers deleted; other recipients
-- and headers are left alone. Redis holds (set by the test driver):
--   alias:shop@alias.example.org -> alice@real.example
package.path = os.getenv("MILTERTEST_DIR") .. "/?.lua;" .. package.path
local t = require("common")

t.run(function()
  local conn = t.connect()
  mt.macro(conn, SMFIC_MAIL, "i", "MTQUEUE1")
  t.check(mt.mailfrom(conn, "<news@shop.test>") == nil, "MAIL")
  t.expect(conn, mt.rcptto(conn, "<Shop@Alias.Example.ORG>"), SMFIR_CONTINUE, "RCPT live alias")
  t.expect(conn, mt.rcptto(conn, "<carol@other.example>"), SMFIR_CONTINUE, "RCPT other domain")
  for _, h in ipairs({ { "Received", "from a" }, { "From", "news@shop.test" }, { "received", "from b" },
                       { "X-Mailer", "ShopMailer" }, { "Subject", "hi" }, { "DKIM-Signature", "v=1" } }) do
    t.check(mt.header(conn, h[1], h[2]) == nil, "header " .. h[1])
  end
  t.expect(conn, mt.eom(conn), SMFIR_CONTINUE, "end of message")
  t.check(mt.eom_check(conn, MT_RCPTDELETE, "<Shop@Alias.Example.ORG>"), "alias not deleted with its raw spelling")
  t.check(mt.eom_check(conn, MT_RCPTADD, "alice@real.example"), "owner not added")
  t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<carol@other.example>"), "foreign recipient deleted")
  t.check(mt.eom_check(conn, MT_HDRDELETE, "Received"), "Received not deleted")
  t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Mailer"), "X-Mailer not deleted")
  t.check(not mt.eom_check(conn, MT_HDRDELETE, "Subject"), "Subject deleted")
  t.check(not mt.eom_check(conn, MT_HDRDELETE, "DKIM-Signature"), "DKIM-Signature deleted")
  mt.disconnect(conn)
end)
