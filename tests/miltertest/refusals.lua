-- Unknown and malformed aliases are refused, corrupt values tempfailed;
-- a transaction with no live alias is left untouched. Redis holds:
--   alias:corrupt@alias.example.org -> "a@b.example c@d.example"
package.path = os.getenv("MILTERTEST_DIR") .. "/?.lua;" .. package.path
local t = require("common")

t.run(function()
  local conn = t.connect()
  t.check(mt.mailfrom(conn, "<news@shop.test>") == nil, "MAIL")
  t.expect(conn, mt.rcptto(conn, "<nobody@alias.example.org>"), SMFIR_REPLYCODE, "RCPT unknown")
  t.expect(conn, mt.rcptto(conn, "<corrupt@alias.example.org>"), SMFIR_REPLYCODE, "RCPT corrupt")
  t.expect(conn, mt.rcptto(conn, "<\"two words\"@alias.example.org>"), SMFIR_REPLYCODE, "RCPT malformed")
  t.expect(conn, mt.rcptto(conn, "<bob@real.example>"), SMFIR_CONTINUE, "RCPT other domain")
  t.check(mt.header(conn, "Received", "from a") == nil, "header")
  t.expect(conn, mt.eom(conn), SMFIR_CONTINUE, "end of message")
  for _, r in ipairs({ "<nobody@alias.example.org>", "<corrupt@alias.example.org>",
                       "<\"two words\"@alias.example.org>", "<bob@real.example>" }) do
    t.check(not mt.eom_check(conn, MT_RCPTDELETE, r), "recipient deleted: " .. r)
  end
  for _, r in ipairs({ "a@b.example", "c@d.example", "a@b.example c@d.example" }) do
    t.check(not mt.eom_check(conn, MT_RCPTADD, r), "recipient added: " .. r)
  end
  t.check(not mt.eom_check(conn, MT_HDRDELETE, "Received"), "a header was deleted")
  mt.disconnect(conn)
end)
