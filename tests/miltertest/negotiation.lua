-- The milter asks for exactly the edits it makes and skips every protocol
-- step it does not use, so message size does not change its cost.
package.path = os.getenv("MILTERTEST_DIR") .. "/?.lua;" .. package.path
local t = require("common")

t.run(function()
  local conn = t.connect()
  for name, flag in pairs({ NOCONNECT = SMFIP_NOCONNECT, NOHELO = SMFIP_NOHELO, NOBODY = SMFIP_NOBODY,
                            NOEOH = SMFIP_NOEOH, NOUNKNOWN = SMFIP_NOUNKNOWN, NODATA = SMFIP_NODATA,
                            NR_HDR = SMFIP_NR_HDR, NR_MAIL = SMFIP_NR_MAIL }) do
    t.check(mt.test_option(conn, flag), "protocol step not skipped: " .. name)
  end
  t.check(not mt.test_option(conn, SMFIP_NORCPT), "RCPT must not be skipped")
  t.check(not mt.test_option(conn, SMFIP_NOHDRS), "headers must not be skipped")
  for name, flag in pairs({ ADDRCPT = SMFIF_ADDRCPT, DELRCPT = SMFIF_DELRCPT, CHGHDRS = SMFIF_CHGHDRS }) do
    t.check(mt.test_action(conn, flag), "action not requested: " .. name)
  end
  for name, flag in pairs({ ADDHDRS = SMFIF_ADDHDRS, CHGBODY = SMFIF_CHGBODY, QUARANTINE = SMFIF_QUARANTINE,
                            CHGFROM = SMFIF_CHGFROM }) do
    t.check(not mt.test_action(conn, flag), "action requested without need: " .. name)
  end
  mt.disconnect(conn)
end)
