/*
 * proxy.c - the PROXY protocol header (versions 1 and 2) that a TCP load
 * balancer sends before the client's bytes, naming the client.
 *
 * A pure parser like http1.c: bytes in, "need more", "invalid" or the
 * header's length and the client's address out.  No I/O, no allocation.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "fw.h"

#define V1_MAX 107              /* the longest v1 line, CRLF included */
#define V2_FIXED 16             /* signature, version/command, family, length */

static const char v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n',
                                'Q', 'U', 'I', 'T', '\n'};

/* A decimal port, 0..65535, no sign and no leading zero (but "0"). */
static int parse_port(const char *s, size_t n, unsigned *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = v;
    return 0;
}

/* One space-separated word of a v1 line starting at *p (before end). */
static int word(const char **p, const char *end, const char **w, size_t *n)
{
    const char *s = *p;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    if (e == s)
        return -1;
    *w = s;
    *n = (size_t)(e - s);
    *p = e < end ? e + 1 : e;
    return 0;
}

static int parse_v1(const char *buf, size_t len, fw_proxy *out)
{
    /* Printable text up to CR LF: a stray byte (an LF alone) is refused
     * as soon as it is seen, not waited on. */
    /* The CR is at most the line's next-to-last byte. */
    size_t lim = len < V1_MAX - 1 ? len : V1_MAX - 1;
    const char *cr = NULL;
    for (size_t i = 0; i < lim; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\r') {
            cr = buf + i;
            break;
        }
        if (ch < 0x20 || ch > 0x7e)
            return -1;
    }
    if (cr == NULL)
        return len >= V1_MAX - 1 ? -1 : 0;
    if ((size_t)(cr - buf) + 1 >= len)
        return 0;               /* the LF is still to come */
    if (cr[1] != '\n')
        return -1;
    const char *p = buf + 6, *end = cr;
    const char *w;
    size_t n;
    if (word(&p, end, &w, &n) < 0)
        return -1;
    int consumed = (int)(cr - buf) + 2;
    if (n == 7 && memcmp(w, "UNKNOWN", 7) == 0) {
        out->family = 0;        /* the balancer does not know: keep the peer */
        return consumed;
    }
    int fam;
    if (n == 4 && memcmp(w, "TCP4", 4) == 0)
        fam = AF_INET;
    else if (n == 4 && memcmp(w, "TCP6", 4) == 0)
        fam = AF_INET6;
    else
        return -1;
    const char *f[4];
    size_t fl[4];
    for (int i = 0; i < 4; i++)
        if (word(&p, end, &f[i], &fl[i]) < 0)
            return -1;
    if (p != end || end[-1] == ' ')
        return -1;              /* more words, or a trailing space */
    char addr[2][64];
    unsigned char bin[16];
    for (int i = 0; i < 2; i++) {
        if (fl[i] >= sizeof addr[i])
            return -1;
        memcpy(addr[i], f[i], fl[i]);
        addr[i][fl[i]] = '\0';
        if (inet_pton(fam, addr[i], bin) != 1)
            return -1;
    }
    unsigned sport, dport;
    if (parse_port(f[2], fl[2], &sport) < 0 || parse_port(f[3], fl[3], &dport) < 0)
        return -1;
    /* Written back from the binary form: one spelling of each address. */
    inet_pton(fam, addr[0], bin);
    if (inet_ntop(fam, bin, out->addr, sizeof out->addr) == NULL)
        return -1;
    snprintf(out->port, sizeof out->port, "%u", sport);
    out->family = fam;
    return consumed;
}

static int parse_v2(const unsigned char *b, size_t len, fw_proxy *out)
{
    if (len < V2_FIXED)
        return 0;
    if ((b[12] >> 4) != 2)
        return -1;              /* version 2 only */
    int cmd = b[12] & 15;
    if (cmd > 1)
        return -1;              /* LOCAL (0) or PROXY (1) */
    size_t body = (size_t)b[14] << 8 | b[15];
    if (body > FW_PROXY_V2_MAX)
        return -1;
    if (len < V2_FIXED + body)
        return 0;
    int consumed = (int)(V2_FIXED + body);
    const unsigned char *a = b + V2_FIXED;
    out->family = 0;
    if (cmd == 0)
        return consumed;        /* the balancer's own check: keep the peer */
    switch (b[13]) {
    case 0x11:                  /* TCP over IPv4 */
        if (body < 12)
            return -1;
        inet_ntop(AF_INET, a, out->addr, sizeof out->addr);
        snprintf(out->port, sizeof out->port, "%u", (unsigned)(a[8] << 8 | a[9]));
        out->family = AF_INET;
        return consumed;
    case 0x21:                  /* TCP over IPv6 */
        if (body < 36)
            return -1;
        inet_ntop(AF_INET6, a, out->addr, sizeof out->addr);
        snprintf(out->port, sizeof out->port, "%u", (unsigned)(a[32] << 8 | a[33]));
        out->family = AF_INET6;
        return consumed;
    case 0x00:                  /* unspecified: keep the peer */
        return consumed;
    default:
        return -1;              /* UDP, unix sockets: not for an HTTP server */
    }
}

int fw_parse_proxy(const char *buf, size_t len, fw_proxy *out)
{
    memset(out, 0, sizeof *out);
    size_t n = len < 12 ? len : 12;
    if (len > 0 && buf[0] == '\r') {
        if (memcmp(buf, v2_sig, n) != 0)
            return -1;
        return n < 12 ? 0 : parse_v2((const unsigned char *)buf, len, out);
    }
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) != 0)
        return -1;              /* no header where one is required */
    return n < 6 ? 0 : parse_v1(buf, len, out);
}
