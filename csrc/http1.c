/*
 * http1.c - a strict HTTP/1.1 request parser (RFC 9112) and chunked decoder.
 *
 * Pure functions over (buffer, length): no I/O, no allocation, no globals
 * that change.  The parser either accepts a head and describes it with
 * slices into the caller's buffer, asks for more bytes, or names the HTTP
 * status to answer.  It is deliberately stricter than the RFC's "MAY be
 * lenient" clauses wherever leniency could let two parsers disagree about
 * where a message ends (request smuggling).
 */
#include <string.h>
#include <strings.h>

#include "fw.h"

/* RFC 9110 tchar: the characters of a token (method, field name); also
 * used by response.c to check the app's header names. */
const unsigned char fw_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};


/* Bytes allowed in a request-target: visible ASCII only. */
static inline int is_target_byte(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f;
}

static inline int is_ows(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Case-insensitive compare of a slice with a lower-case literal. */
static int slice_is(const char *p, size_t n, const char *lit, size_t litn)
{
    return n == litn && strncasecmp(p, lit, n) == 0;
}

/*
 * Look for the end of the head.  Returns the offset just past the blank
 * line, 0 if not there yet, or -400 on a bare LF (we only accept CRLF, so a
 * client using bare LF would otherwise wait for a timeout).
 */
static long find_head_end(const char *buf, size_t len, size_t from)
{
    const char *p = buf + from, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return 0;
        size_t i = (size_t)(nl - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return -400;
        if (i >= 2 && buf[i - 2] == '\r')
            return -400;        /* "\r\r\n": the first CR is bare */
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return (long)(i + 1);
        p = nl + 1;
    }
    return 0;
}

/* Leading empty lines before a request line are ignored (RFC 9112 2.2). */
static size_t skip_empty_lines(const char *buf, size_t len)
{
    size_t i = 0;
    while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
        i += 2;
    return i;
}

/* Checks on a head that is not complete yet, so that junk fails early. */
static int check_partial(const char *buf, size_t len, size_t start,
                         const fw_limits *lim)
{
    /* Bounded look-ups: this runs again each time more bytes arrive. */
    size_t window = len - start;
    if (window > (size_t)lim->request_line + 3)
        window = (size_t)lim->request_line + 3;
    const char *nl = memchr(buf + start, '\n', window);
    /* The method must be a token followed by one space.  Only its first
     * bytes are looked at here; the full parse judges the rest. */
    size_t i = start, mend = start + (window < 64 ? window : 64);
    while (i < mend && fw_tchar[(unsigned char)buf[i]])
        i++;
    if (i < mend && buf[i] != ' ' && !(buf[i] == '\r' && i + 1 == len))
        return -400;
    if (nl == NULL && len - start > (size_t)lim->request_line + 2)
        return -414;
    if (len > (size_t)lim->head)
        return -431;
    return 0;
}

/* Parse "HTTP/x.y".  Returns 11, 10, -505 (other version) or -400. */
static int parse_version(const char *p, size_t n)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.')
        return -400;
    if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
        return -400;
    if (p[5] == '1' && p[7] == '0')
        return 10;
    /* RFC 9110 2.5: a higher minor version of 1 is served as the highest
     * this server implements, 1.1; another major version is refused. */
    if (p[5] == '1')
        return 11;
    return -505;
}

/* Content-Length: 1*DIGIT, at most 18 digits so it fits an int64. */
static int64_t parse_content_length(const char *p, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/*
 * Iterate the elements of a comma-separated list value (RFC 9110 5.6.1).
 * Returns 1 with the element in *e and *en, 0 at the end, -1 on an empty element.
 */
static int next_element(const char **pp, const char *end, const char **e,
                        size_t *en)
{
    const char *p = *pp;
    if (p >= end)
        return 0;
    while (p < end && is_ows((unsigned char)*p))
        p++;
    const char *s = p;
    while (p < end && *p != ',')
        p++;
    const char *t = p;
    while (t > s && is_ows((unsigned char)t[-1]))
        t--;
    if (p < end)
        p++;                    /* the comma */
    *pp = p;
    if (t == s)
        return -1;
    *e = s;
    *en = (size_t)(t - s);
    return 1;
}

/*
 * Transfer-Encoding: the final coding must be chunked (else the length is
 * unknowable: 400), chunked only once, and we decode no other coding (501).
 */
static int parse_transfer_encoding(const char *p, size_t n, int *chunked_seen,
                                   int *other_seen, int *last_chunked)
{
    if (n == 0 || p[n - 1] == ',')
        return -400;            /* an empty list element: refuse, not guess */
    const char *end = p + n, *e;
    size_t en;
    int r;
    while ((r = next_element(&p, end, &e, &en)) != 0) {
        if (r < 0)
            return -400;
        for (size_t i = 0; i < en; i++)
            if (!fw_tchar[(unsigned char)e[i]])
                return -400;
        if (slice_is(e, en, "chunked", 7)) {
            if (*chunked_seen)
                return -400;
            *chunked_seen = 1;
            *last_chunked = 1;
        } else {
            *other_seen = 1;
            *last_chunked = 0;
        }
    }
    return 0;
}

/* Connection: only the close and keep-alive options matter here. */
static void parse_connection(const char *p, size_t n, int *close_seen,
                             int *keepalive_seen)
{
    const char *end = p + n, *e;
    size_t en;
    int r;
    while ((r = next_element(&p, end, &e, &en)) != 0) {
        if (r < 0)
            continue;
        if (slice_is(e, en, "close", 5))
            *close_seen = 1;
        else if (slice_is(e, en, "keep-alive", 10))
            *keepalive_seen = 1;
    }
}

enum { H_OTHER, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_CONNECTION,
       H_EXPECT, H_HOST, H_CONTENT_TYPE };

/* Which of the fields that govern framing a name is (case-insensitive). */
static int classify(const char *p, size_t n)
{
    switch (n) {
    case 4:
        return slice_is(p, n, "host", 4) ? H_HOST : H_OTHER;
    case 6:
        return slice_is(p, n, "expect", 6) ? H_EXPECT : H_OTHER;
    case 10:
        return slice_is(p, n, "connection", 10) ? H_CONNECTION : H_OTHER;
    case 12:
        return slice_is(p, n, "content-type", 12) ? H_CONTENT_TYPE : H_OTHER;
    case 14:
        return slice_is(p, n, "content-length", 14) ? H_CONTENT_LENGTH
                                                     : H_OTHER;
    case 17:
        return slice_is(p, n, "transfer-encoding", 17) ? H_TRANSFER_ENCODING
                                                        : H_OTHER;
    default:
        return H_OTHER;
    }
}

/*
 * uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): an IP literal in
 * brackets, or a reg-name / IPv4 address of unreserved, pct-encoded and
 * sub-delims characters; the port is digits.  Anything else (space, '/',
 * '@', '?', '#', a second ':') is what a framework would paste into a URL,
 * so it is refused rather than passed on.  Empty is allowed: it is what
 * an empty authority gives.
 */
static int is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

static int valid_authority(const char *p, size_t n)
{
    size_t i = 0;
    if (n && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!(is_hex((unsigned char)p[i]) || p[i] == ':' || p[i] == '.' ||
                  p[i] == 'v' || p[i] == 'V'))
                return 0;
        if (i == n || i == 1)
            return 0;           /* no closing bracket, or nothing inside */
        i++;
    } else {
        for (; i < n && p[i] != ':'; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (ch == '%') {
                if (i + 2 >= n || !is_hex((unsigned char)p[i + 1]) ||
                    !is_hex((unsigned char)p[i + 2]))
                    return 0;
                i += 2;
            } else if (!(fw_tchar[ch] || ch == '(' || ch == ')' || ch == ',' ||
                         ch == ';' || ch == '=') ||
                       ch == '"' || ch == '^' || ch == '`' || ch == '|' ||
                       ch == '#') {
                return 0;
            }
        }
    }
    if (i == n)
        return 1;
    if (p[i] != ':')
        return 0;
    for (i++; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

int fw_parse_head(const char *buf, size_t len, const fw_limits *lim,
                  fw_head *out, size_t *scanned)
{
    size_t start = skip_empty_lines(buf, len);
    size_t from = *scanned > start + 3 ? *scanned - 3 : start;
    long end = find_head_end(buf, len, from);
    if (end < 0)
        return (int)end;
    if (end == 0) {
        *scanned = len;
        return check_partial(buf, len, start, lim);
    }
    if ((size_t)end > (size_t)lim->head)
        return -431;

    const char *p = buf + start;
    const char *head_end = buf + end;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    const char *line = p;
    const char *m = p;
    while (fw_tchar[(unsigned char)*p])
        p++;
    if (p == m || *p != ' ')
        return -400;
    out->method.off = (uint32_t)(m - buf);
    out->method.len = (uint32_t)(p - m);
    p++;
    const char *t = p;
    while (is_target_byte((unsigned char)*p))
        p++;
    if (p == t || *p != ' ')
        return -400;
    out->target.off = (uint32_t)(t - buf);
    out->target.len = (uint32_t)(p - t);
    p++;
    const char *v = p;
    while (*p != '\r' && p < head_end)
        p++;
    if (p[1] != '\n')
        return -400;            /* bare CR inside the request line */
    if ((size_t)(p - line) > lim->request_line)
        return -414;
    int version = parse_version(v, (size_t)(p - v));
    if (version < 0)
        return version;
    p += 2;

    /* The target must be one of the forms RFC 9112 3.2 allows: origin
     * ("/..."), absolute ("scheme://authority/..."), or asterisk ("*").
     * Authority-form belongs to CONNECT, which a WSGI app cannot serve.
     * Anything else is refused rather than cut into a path. */
    const char *tp = buf + out->target.off, *tend = tp + out->target.len;
    const char *path = tp;
    if (memchr(tp, '#', (size_t)(tend - tp)) != NULL)
        return -400;            /* a fragment is never sent (RFC 9112 3.2) */
    if (*tp == '*') {
        /* The asterisk form is for OPTIONS only (RFC 9112 3.2.4). */
        if (tend - tp != 1 || out->method.len != 7 ||
            memcmp(buf + out->method.off, "OPTIONS", 7) != 0)
            return -400;
    } else if (*tp != '/') {
        const char *a = tp;
        if (!((*a | 0x20) >= 'a' && (*a | 0x20) <= 'z'))
            return -400;        /* a scheme starts with a letter */
        while (a < tend && (((*a | 0x20) >= 'a' && (*a | 0x20) <= 'z') ||
                            (*a >= '0' && *a <= '9') || *a == '+' ||
                            *a == '-' || *a == '.'))
            a++;
        if (tend - a < 3 || a[0] != ':' || a[1] != '/' || a[2] != '/')
            return -400;
        a += 3;
        const char *auth = a;
        while (a < tend && *a != '/' && *a != '?') {
            if (*a == '@')
                return -400;    /* userinfo is not for http(s) (RFC 9110 4.2.4) */
            a++;
        }
        if (a == auth || !valid_authority(auth, (size_t)(a - auth)))
            return -400;        /* an empty host is invalid (RFC 9110 4.2.1) */
        path = a;           /* absolute-form: the path follows the authority */
    }
    const char *q = memchr(path, '?', (size_t)(tend - path));
    out->path.off = (uint32_t)(path - buf);
    out->path.len = (uint32_t)((q ? q : tend) - path);
    out->query.off = q ? (uint32_t)(q + 1 - buf) : (uint32_t)(tend - buf);
    out->query.len = q ? (uint32_t)(tend - q - 1) : 0;

    int flags = version == 11 ? FW_REQ_HTTP11 : 0;
    if (out->method.len == 4 && memcmp(m, "HEAD", 4) == 0)
        flags |= FW_REQ_HEAD;
    int64_t content_length = -1;
    int cl_count = 0, host_count = 0, te_seen = 0, ct_count = 0;
    int chunked_seen = 0, other_coding = 0, last_chunked = 0;
    int close_seen = 0, keepalive_seen = 0, expect_bad = 0;
    uint32_t nfields = 0, total = 0;

    /* field-line = field-name ":" OWS field-value OWS CRLF */
    while (p[0] != '\r') {
        const char *fl = p;
        if (is_ows((unsigned char)*p))
            return -400;        /* obs-fold or whitespace before a name */
        const char *n = p;
        int underscore = 0;
        while (fw_tchar[(unsigned char)*p]) {
            underscore |= *p == '_';
            p++;
        }
        if (p == n || *p != ':')
            return -400;        /* empty name, bad byte, or space before ':' */
        size_t nlen = (size_t)(p - n);
        p++;
        while (is_ows((unsigned char)*p))
            p++;
        const char *val = p;
        while (fw_is_field_byte((unsigned char)*p))
            p++;
        if (p[0] != '\r' || p[1] != '\n')
            return -400;        /* NUL, CTL or a bare CR in the value */
        const char *vend = p;
        while (vend > val && is_ows((unsigned char)vend[-1]))
            vend--;
        size_t vlen = (size_t)(vend - val);
        p += 2;
        if ((size_t)(p - fl) > (size_t)lim->field_size + 2)
            return -431;
        if (++total > lim->fields || total > FW_MAX_FIELDS)
            return -431;

        if (underscore && !lim->allow_underscores)
            continue;           /* X-Auth_User must not pose as X-Auth-User */
        switch (classify(n, nlen)) {
        case H_CONTENT_LENGTH:
            if (++cl_count > 1)
                return -400;
            content_length = parse_content_length(val, vlen);
            if (content_length < 0)
                return -400;
            break;
        case H_TRANSFER_ENCODING: {
            te_seen = 1;
            int r = parse_transfer_encoding(val, vlen, &chunked_seen,
                                            &other_coding, &last_chunked);
            if (r < 0)
                return r;
            break;
        }
        case H_CONNECTION:
            parse_connection(val, vlen, &close_seen, &keepalive_seen);
            break;
        case H_EXPECT:
            if (slice_is(val, vlen, "100-continue", 12))
                flags |= FW_REQ_CONTINUE;
            else
                expect_bad = 1;
            break;
        case H_CONTENT_TYPE:
            /* One value only (RFC 9110 8.3): two would be merged into a
             * type no one sent, or read first-wins by one component and
             * last-wins by another. */
            if (ct_count++)
                return -400;
            break;
        case H_HOST:
            host_count++;
            if (!valid_authority(val, vlen))
                return -400;
            break;
        default:
            break;
        }
        out->fields[nfields].name.off = (uint32_t)(n - buf);
        out->fields[nfields].name.len = (uint32_t)nlen;
        out->fields[nfields].value.off = (uint32_t)(val - buf);
        out->fields[nfields].value.len = (uint32_t)vlen;
        nfields++;
    }
    if (p + 2 != head_end || p[1] != '\n')
        return -400;            /* a bare CR at the start of a line */

    if (te_seen) {
        if (version == 10 || cl_count)
            return -400;        /* ambiguous framing: never guess */
        if (!last_chunked)
            return -400;        /* the length cannot be determined */
        if (other_coding)
            return -501;        /* a coding we do not decode */
        flags |= FW_REQ_CHUNKED;
    }
    if (host_count > 1 || (version == 11 && host_count == 0))
        return -400;
    if (version == 10)
        flags &= ~FW_REQ_CONTINUE;  /* RFC 9110 10.1.1: ignore on 1.0 */
    else if (expect_bad)
        return -417;
    if (version == 11 ? !close_seen : (keepalive_seen && !close_seen))
        flags |= FW_REQ_KEEPALIVE;

    out->flags = flags;
    out->content_length = content_length;
    out->nfields = nfields;
    out->head_len = (uint32_t)end;
    *scanned = 0;
    return (int)end;
}

/* ---- chunked transfer coding (RFC 9112 7.1) ---- */

enum {
    CK_SIZE_FIRST = 0,          /* first hex digit of a chunk size */
    CK_SIZE,                    /* more hex digits */
    CK_SIZE_WS,                 /* whitespace after the size */
    CK_EXT,                     /* chunk extension, ignored */
    CK_SIZE_LF,                 /* LF ending the size line */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START,           /* start of a trailer line or the end */
    CK_TRAILER_NAME,            /* a trailer field's name */
    CK_TRAILER,                 /* its value */
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE
};

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A trailer name, lower-cased, as far as it fits: longer ones are none of
 * the names below. */
static void trailer_name_add(fw_chunked *st, unsigned char ch)
{
    if (st->name_len < sizeof st->name)
        st->name[st->name_len] = (char)(ch | ((ch >= 'A' && ch <= 'Z') << 5));
    if (st->name_len <= sizeof st->name)
        st->name_len++;
}

/* Fields that must not come as trailers (RFC 9110 6.5.1): framing,
 * routing, request modifiers, authentication and content format are needed
 * before the content, and a component that merged trailers into the head
 * would let them override what was checked there. */
static int trailer_forbidden(const fw_chunked *st)
{
    static const char *const names[] = {
        "content-length", "transfer-encoding", "host", "trailer", "te",
        "connection", "keep-alive", "upgrade", "expect", "max-forwards",
        "cache-control", "authorization", "proxy-authorization", "cookie",
        "content-encoding", "content-type", "content-range", "range",
        "if-match", "if-none-match", "if-modified-since",
        "if-unmodified-since", "if-range",
    };
    if (st->name_len > sizeof st->name)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == st->name_len &&
            memcmp(names[i], st->name, st->name_len) == 0)
            return 1;
    return 0;
}

int fw_chunked_decode(fw_chunked *st, char *buf, size_t len, size_t max_line,
                      size_t *consumed, size_t *produced)
{
    size_t r = 0, w = 0;
    int result = 0;
    while (r < len) {
        unsigned char ch = (unsigned char)buf[r];
        switch (st->state) {
        case CK_SIZE_FIRST:
        case CK_SIZE: {
            int h = hexval(ch);
            if (h >= 0) {
                if (st->remaining >> 56)
                    goto bad;   /* chunk-size over 2^60: overflow, refused */
                st->remaining = (st->remaining << 4) | (uint64_t)h;
                st->state = CK_SIZE;
            } else if (st->state == CK_SIZE_FIRST) {
                goto bad;
            } else if (is_ows(ch)) {
                st->state = CK_SIZE_WS;
            } else if (ch == ';') {
                st->state = CK_EXT;
            } else if (ch == '\r') {
                st->state = CK_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        }
        case CK_SIZE_WS:
            /* RFC 9112 7.1.1: whitespace after a size only before an
             * extension ("5 ;x"), never before the line end ("5 "). */
            if (ch == ';')
                st->state = CK_EXT;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CK_EXT:
            if (ch == '\r')
                st->state = CK_SIZE_LF;
            else if (!fw_is_field_byte(ch))
                goto bad;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                goto bad;
            st->line_len = 0;
            st->state = st->remaining ? CK_DATA : CK_TRAILER_START;
            r++;
            continue;
        case CK_DATA: {
            size_t n = len - r;
            if ((uint64_t)n > st->remaining)
                n = (size_t)st->remaining;
            if (w != r)
                memmove(buf + w, buf + r, n);
            w += n;
            r += n;
            st->remaining -= n;
            if (st->remaining == 0)
                st->state = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                goto bad;
            st->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                goto bad;
            st->state = CK_SIZE_FIRST;
            st->line_len = 0;
            r++;
            continue;
        case CK_TRAILER_START:
            if (ch == '\r') {
                st->state = CK_END_LF;
            } else if (fw_tchar[ch]) {
                st->state = CK_TRAILER_NAME;
                st->name_len = 0;
                trailer_name_add(st, ch);
            } else {
                goto bad;       /* obs-fold or junk */
            }
            break;
        case CK_TRAILER_NAME:
            /* Trailers are checked as strictly as header fields, then
             * dropped: none reaches the app. */
            if (ch == ':') {
                if (trailer_forbidden(st))
                    goto bad;
                st->state = CK_TRAILER;
            } else if (fw_tchar[ch]) {
                trailer_name_add(st, ch);
            } else {
                goto bad;
            }
            break;
        case CK_TRAILER:
            if (ch == '\r')
                st->state = CK_TRAILER_LF;
            else if (!fw_is_field_byte(ch))
                goto bad;
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            st->state = CK_TRAILER_START;
            break;
        case CK_END_LF:
            if (ch != '\n')
                goto bad;
            st->state = CK_DONE;
            r++;
            result = 1;
            goto out;
        default:
            goto bad;
        }
        /* every framing byte lands here: bound the lines they form */
        r++;
        if (st->state >= CK_TRAILER_START) {
            if (++st->trailer_len > max_line)
                goto bad;
        } else if (++st->line_len > max_line) {
            goto bad;
        }
    }
out:
    *consumed = r;
    *produced = w;
    return result;
bad:
    *consumed = r;
    *produced = w;
    return -400;
}
