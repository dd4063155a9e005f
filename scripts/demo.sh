#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine, as root:
# installs dependencies, builds, starts Redis (127.0.0.1:6390), the milter and
# a private Postfix (127.0.0.1:2525) under /tmp/impalemail-demo, creates a
# live alias, sends a message through it, shows it delivered, and shows the
# 550 for a dead alias. Everything stays running: `scripts/demo.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKDIR=${IMPALEMAIL_DEMO_DIR:-/tmp/impalemail-demo}
SMTP_PORT=2525
REDIS_PORT=6390
LAB=(/usr/bin/python3 tests/e2e/lab.py)

if [ "${1:-}" = "stop" ]; then
    "${LAB[@]}" down "$WORKDIR"
    exit 0
fi

scripts/install-deps.sh
scripts/build.sh

if [ -f "$WORKDIR/lab.json" ]; then
    "${LAB[@]}" down "$WORKDIR" >/dev/null 2>&1 || true
fi
rm -rf "$WORKDIR"
echo "== starting Redis :$REDIS_PORT, impalemail-milter, Postfix :$SMTP_PORT in $WORKDIR"
"${LAB[@]}" up "$WORKDIR" --smtp-port "$SMTP_PORT" --redis-port "$REDIS_PORT" --milter "$PWD/build/milter/impalemail-milter" >/dev/null

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
ALIAS="shop-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')@alias.example.org"
DEAD="expired-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')@alias.example.org"
MAILDIR="$WORKDIR/postfix/vmail/real.example/alice"

echo
echo "== creating an alias that lives one hour"
echo "\$ redis-cli SET alias:$ALIAS alice@real.example EX 3600"
rcli SET "alias:$ALIAS" alice@real.example EX 3600
echo "\$ redis-cli TTL alias:$ALIAS"
rcli TTL "alias:$ALIAS"

echo
echo "== sending a message to $ALIAS (with headers that identify the sender)"
count_mail() { { ls "$MAILDIR/new" 2>/dev/null || true; } | wc -l; }
before=$(count_mail)
swaks --server 127.0.0.1:$SMTP_PORT --from news@shop.test --to "$ALIAS" \
      --header "Subject: Your order has shipped" \
      --header "X-Mailer: ShopMailer 9.1" \
      --header "X-Originating-IP: [203.0.113.7]" \
      --header "Disposition-Notification-To: tracker@shop.test" \
      --add-header "Received: from laptop.sender.test ([203.0.113.7]) by smtp.shop.test" \
      --body "Your parcel is on its way." --hide-informational --silent 1 \
  && echo "accepted (250)"

for _ in $(seq 1 100); do
    [ "$(count_mail)" -gt "$before" ] && break
    sleep 0.1
done
delivered=$(ls -t "$MAILDIR"/new/* 2>/dev/null | head -1 || true)
if [ -z "$delivered" ]; then
    echo "not delivered; see $WORKDIR/postfix/maillog and $WORKDIR/milter/milter.log" >&2
    exit 1
fi
echo
echo "== delivered to alice@real.example: $delivered"
echo "(the envelope recipient is now alice; To: still shows the alias as the sender wrote it."
echo " X-Mailer, X-Originating-IP, the read-receipt request and the sender's Received are"
echo " stripped; the Received left is this Postfix's own, without the alias)"
echo "----------------------------------------------------------------------"
cat "$delivered"
echo "----------------------------------------------------------------------"

echo
echo "== a dead alias is refused at RCPT time ($DEAD never existed or has expired)"
swaks --server 127.0.0.1:$SMTP_PORT --from news@shop.test --to "$DEAD" --quit-after RCPT 2>&1 \
  | grep -E '^<\*\* +5[0-9][0-9]' || true

echo
echo "== the milter's log ($WORKDIR/milter/milter.log): owners appear only as pseudonyms"
tail -n 4 "$WORKDIR/milter/milter.log"

cat <<EOT

Everything is still running. Try it:
  redis-cli -p $REDIS_PORT SET alias:test@alias.example.org bob@real.example EX 60
  swaks --server 127.0.0.1:$SMTP_PORT --to test@alias.example.org
  ls $WORKDIR/postfix/vmail/real.example/bob/new/
  redis-cli -p $REDIS_PORT DEL alias:test@alias.example.org     # revoke: the next RCPT gets 550
  redis-cli -p $REDIS_PORT --scan --pattern 'alias:*'
Logs: $WORKDIR/milter/milter.log  $WORKDIR/postfix/maillog
Stop: scripts/demo.sh stop
EOT
