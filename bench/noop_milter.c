/*
 * noop-milter: the smallest useful libmilter filter, the ceiling for any
 * libmilter filter in bench/run.sh.
 *
 * It negotiates the minimal protocol: no actions, and it asks the MTA to skip
 * every stage it may skip (connect, HELO, MAIL, RCPT, DATA, headers, end of
 * headers, body, unknown commands), with no reply to any of them.  What is
 * left is what no filter can avoid: the connection, the option negotiation,
 * end of message (answered "continue"), abort/quit.  Same libmilter, same
 * thread model as impalemail-milter.
 *
 *   cc -O2 -Wall -o noop-milter noop_milter.c -lmilter -pthread
 *   noop-milter unix:/path/to/noop.sock
 */
#include <libmilter/mfapi.h>

#include <stdio.h>
#include <sys/stat.h>

static const unsigned long kSkip =
    SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS |
    SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL |
    SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_HDR;

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx;
    (void)f0;
    (void)f2;
    (void)f3;
    *pf0 = 0;          /* no actions */
    *pf1 = kSkip & f1; /* skip whatever the MTA offers to skip */
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    struct smfiDesc desc = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
        return 2;
    }
    desc.xxfi_name = "bench-noop";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = 0;
    desc.xxfi_eom = on_eom;
    desc.xxfi_negotiate = on_negotiate;
    if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "noop-milter: cannot set up %s\n", argv[1]);
        return 1;
    }
    /* Same socket mode as impalemail-milter: owner and group (postfix). */
    umask(0007);
    if (smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "noop-milter: cannot open %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
