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
 * With --steps it negotiates exactly what impalemail-milter negotiates (the
 * same actions, skipped stages, no-reply stages and macro list) and answers
 * every callback "continue" without doing anything: the cost of the
 * protocol steps impalemail needs, without its work.
 *
 *   cc -O2 -Wall -o noop-milter noop_milter.c -lmilter -pthread
 *   noop-milter [--steps] unix:/path/to/noop.sock
 */
#include <libmilter/mfapi.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const unsigned long kSkip =
    SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS |
    SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL |
    SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_HDR;

/* --steps: impalemail-milter's negotiation (milter/src/adapter/milter_callbacks.cpp). */
static const unsigned long kStepsActions = SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGHDRS;
static const unsigned long kStepsProtocol = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH |
                                            SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_MAIL | SMFIP_NR_HDR;
static int steps_mode;
static unsigned long steps_protocol; /* negotiated; the same on every connection */

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    (void)f2;
    (void)f3;
    *pf2 = 0;
    *pf3 = 0;
    if (!steps_mode) {
        *pf0 = 0;          /* no actions */
        *pf1 = kSkip & f1; /* skip whatever the MTA offers to skip */
        return SMFIS_CONTINUE;
    }
    if ((f0 & kStepsActions) != kStepsActions)
        return SMFIS_REJECT;
    *pf0 = kStepsActions;
    *pf1 = kStepsProtocol & f1;
    steps_protocol = *pf1;
    if (f0 & SMFIF_SETSYMLIST) {
        *pf0 |= SMFIF_SETSYMLIST;
        smfi_setsymlist(ctx, SMFIM_ENVFROM, "i");
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
        smfi_setsymlist(ctx, SMFIM_EOM, "i");
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
    (void)ctx;
    (void)argv;
    return (steps_protocol & SMFIP_NR_MAIL) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
    (void)ctx;
    (void)argv;
    return SMFIS_CONTINUE;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
    (void)ctx;
    (void)name;
    (void)value;
    return (steps_protocol & SMFIP_NR_HDR) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    struct smfiDesc desc = {0};
    char *conn;
    if (argc == 3 && strcmp(argv[1], "--steps") == 0) {
        steps_mode = 1;
        conn = argv[2];
    } else if (argc == 2) {
        conn = argv[1];
    } else {
        fprintf(stderr, "usage: %s [--steps] unix:/path/to/socket\n", argv[0]);
        return 2;
    }
    desc.xxfi_name = "bench-noop";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = steps_mode ? kStepsActions : 0;
    desc.xxfi_eom = on_eom;
    desc.xxfi_negotiate = on_negotiate;
    if (steps_mode) {
        desc.xxfi_envfrom = on_envfrom;
        desc.xxfi_envrcpt = on_envrcpt;
        desc.xxfi_header = on_header;
    }
    if (smfi_setconn(conn) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "noop-milter: cannot set up %s\n", conn);
        return 1;
    }
    /* Same socket mode as impalemail-milter: owner and group (postfix). */
    umask(0007);
    if (smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "noop-milter: cannot open %s\n", conn);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
