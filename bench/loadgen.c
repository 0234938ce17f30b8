/* bench/loadgen.c: a closed-loop HTTP/1.1 load generator that times the whole request cycle.
 *
 * N connections over T threads (one epoll loop each) send one fixed GET request each, wait for
 * the whole response, and send the next one. Two latencies are recorded per request:
 *
 *   cycle: from the moment the client is ready to send (the start, or the last byte of the
 *          previous response on that connection) to the last byte of this response. When the
 *          server closed the connection (Connection: close, HTTP/1.0 without keep-alive, a
 *          read-to-close body, or an EOF before any byte of a response on a reused
 *          connection), the close, the new connect() and the wait for it are inside this time.
 *   write: from the first write() of the request to the last byte of its response: what wrk
 *          measures; a reconnect is outside it.
 *
 * The run ends after -d seconds or -n requests (whichever comes first). A response still in
 * flight then is not counted. Output: one JSON line on stdout (docs/performance.md, "Cycle
 * time at c100"). Linux only (epoll).
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -pthread (bench/run.py build_loadgen).
 *
 * Usage: loadgen [-c CONNS] [-t THREADS] [-d SECONDS] [-n REQUESTS] [-T TIMEOUT_S]
 *                [-H 'Name: value']... HOST PORT PATH
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define MAX_HEADERS 16
#define RETRY_DELAY_NS 10000000ll /* after a refused connect, try again 10 ms later */

enum conn_state { C_CONNECTING, C_WRITING, C_HEAD, C_BODY, C_WAIT, C_DONE };
enum body_kind { B_NONE, B_LENGTH, B_CHUNKED, B_CLOSE };
enum chunk_state { K_SIZE, K_EXT, K_SIZE_LF, K_DATA, K_DATA_CR, K_DATA_LF, K_TRAILER };
enum err_kind { E_CONNECT, E_READ, E_WRITE, E_TIMEOUT, E_PARSE, E_COUNT };
static const char *const err_names[E_COUNT] = {"connect", "read", "write", "timeout", "parse"};

struct lat {
    uint64_t *v;
    size_t n, cap;
};

struct conn {
    struct worker *w;
    unsigned idx;
    uint32_t gen;      /* bumped on every new socket, so stale epoll events are ignored */
    int fd;
    enum conn_state state;
    int reused;        /* this socket already carried a complete response */
    int retried;       /* the current request was already resent once after an EOF */
    int64_t t_ready;   /* cycle start */
    int64_t t_write;   /* first write() of the current attempt */
    int64_t t_wake;    /* C_WAIT: when to connect again */
    size_t written;
    char head[HEAD_MAX];
    size_t head_len, scanned;
    enum body_kind body;
    uint64_t remaining;
    enum chunk_state ks;
    int trailer_line_len;
    int keep_alive;
    int status;
};

struct worker {
    pthread_t tid;
    int ep;
    struct conn *conns;
    unsigned nconns;
    struct lat cycle, write;
    uint64_t requests, non2xx, errors[E_COUNT], connects, retries;
};

static struct sockaddr_in g_addr;
static char *g_request;
static size_t g_request_len;
static int64_t g_end_ns;          /* 0: no duration bound */
static long long g_max_requests;  /* 0: no count bound */
static atomic_llong g_issued;
static int64_t g_timeout_ns = 2000000000ll;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void lat_push(struct lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            perror("loadgen: realloc");
            exit(2);
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = ns;
}

static void ep_add(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)c->gen << 32) | c->idx};
    if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        perror("loadgen: epoll_ctl");
        exit(2);
    }
}

static void close_fd(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
}

/* Claims the next request of the run; 0 when the run is over (time or count). */
static int may_start(int64_t now)
{
    if (g_end_ns && now >= g_end_ns)
        return 0;
    if (g_max_requests && atomic_fetch_add(&g_issued, 1) >= g_max_requests)
        return 0;
    return 1;
}

static void begin_attempt(struct conn *c)
{
    c->written = 0;
    c->head_len = c->scanned = 0;
    c->state = C_WRITING;
    c->t_write = 0;
}

/* Opens a new socket and starts a non-blocking connect; the cycle clock keeps running. */
static void open_conn(struct conn *c)
{
    close_fd(c);
    c->gen++;
    c->reused = 0;
    c->w->connects++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("loadgen: socket");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = C_CONNECTING;
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) == 0) {
        begin_attempt(c);
    } else if (errno != EINPROGRESS) {
        c->w->errors[E_CONNECT]++;
        close_fd(c);
        c->state = C_WAIT;
        c->t_wake = now_ns() + RETRY_DELAY_NS;
        return;
    }
    ep_add(c);
}

/* The next request on this connection starts now: on this socket, or on a new one. */
static void next_request(struct conn *c, int reconnect)
{
    int64_t now = now_ns();
    c->t_ready = now;
    c->retried = 0;
    if (!may_start(now)) {
        close_fd(c);
        c->state = C_DONE;
        return;
    }
    if (reconnect)
        open_conn(c);
    else
        begin_attempt(c);
}

static void fail(struct conn *c, enum err_kind e)
{
    c->w->errors[e]++;
    next_request(c, 1);
}

/* The server closed the socket before any byte of the response. On a socket that already
 * carried a response that is a keep-alive connection closed under us: send again on a new one,
 * once, with the cycle clock still running. Otherwise it is an error. */
static void eof_before_response(struct conn *c, enum err_kind e)
{
    if (c->reused && !c->retried) {
        c->retried = 1;
        c->w->retries++;
        open_conn(c);
    } else {
        fail(c, e);
    }
}

static void complete(struct conn *c)
{
    int64_t now = now_ns();
    struct worker *w = c->w;
    if (g_end_ns && now > g_end_ns) { /* finished after the end: not counted */
        close_fd(c);
        c->state = C_DONE;
        return;
    }
    w->requests++;
    if (c->status < 200 || c->status > 399)
        w->non2xx++;
    lat_push(&w->cycle, (uint64_t)(now - c->t_ready));
    lat_push(&w->write, (uint64_t)(now - c->t_write));
    int reconnect = !c->keep_alive || c->body == B_CLOSE;
    if (!reconnect) {
        /* A server that closes without saying so has usually sent its FIN with the response:
         * notice it now instead of writing into a closed socket. */
        char b;
        ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            reconnect = 1;
        else if (r > 0) { /* bytes nobody asked for */
            w->errors[E_PARSE]++;
            reconnect = 1;
        }
    }
    c->reused = 1;
    next_request(c, reconnect);
}

static int token_in(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++) {
        if (strncasecmp(v + i, tok, tl) == 0 && (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',')
            && (i + tl == n || v[i + tl] == ' ' || v[i + tl] == ',' || v[i + tl] == '\t'))
            return 1;
    }
    return 0;
}

/* Parses the head in c->head[0..end). Returns 0, or -1 on a malformed head. */
static int parse_head(struct conn *c, size_t end)
{
    const char *p = c->head, *e = c->head + end;
    if (end < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    int http11 = p[7] == '1';
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        st = st * 10 + (p[i] - '0');
    }
    c->status = st;
    c->keep_alive = http11;
    int have_len = 0, chunked = 0;
    uint64_t len = 0;
    const char *line = memchr(p, '\n', (size_t)(e - p));
    if (!line)
        return -1;
    line++;
    while (line < e) {
        const char *nl = memchr(line, '\n', (size_t)(e - line));
        if (!nl)
            return -1;
        const char *le = nl;
        if (le > line && le[-1] == '\r')
            le--;
        if (le == line)
            break; /* the empty line */
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon)
            return -1;
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(le - v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
            if (vlen == 0)
                return -1;
            len = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9' || len > (UINT64_MAX - 9) / 10)
                    return -1;
                len = len * 10 + (uint64_t)(v[i] - '0');
            }
            have_len = 1;
        } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            chunked = token_in(v, vlen, "chunked");
        } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
            if (token_in(v, vlen, "close"))
                c->keep_alive = 0;
            else if (token_in(v, vlen, "keep-alive"))
                c->keep_alive = 1;
        }
        line = nl + 1;
    }
    if (st == 204 || st == 304 || (st >= 100 && st < 200)) {
        c->body = B_NONE;
    } else if (chunked) {
        c->body = B_CHUNKED;
        c->ks = K_SIZE;
        c->remaining = 0;
    } else if (have_len) {
        c->body = len ? B_LENGTH : B_NONE;
        c->remaining = len;
    } else {
        c->body = B_CLOSE;
    }
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Consumes body bytes. Returns the number used (the rest would be bytes after the response),
 * sets *done when the response is complete, or returns -1 on a malformed chunked body. */
static ssize_t body_bytes(struct conn *c, const char *p, size_t n, int *done)
{
    *done = 0;
    if (c->body == B_CLOSE)
        return (ssize_t)n;
    if (c->body == B_LENGTH) {
        size_t take = n < c->remaining ? n : (size_t)c->remaining;
        c->remaining -= take;
        *done = c->remaining == 0;
        return (ssize_t)take;
    }
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        switch (c->ks) {
        case K_SIZE: {
            int h = hexval(ch);
            if (h >= 0) {
                if (c->remaining > (UINT64_MAX >> 4))
                    return -1;
                c->remaining = c->remaining * 16 + (uint64_t)h;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->ks = K_EXT;
            } else if (ch == '\r') {
                c->ks = K_SIZE_LF;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case K_EXT:
            if (ch == '\r')
                c->ks = K_SIZE_LF;
            i++;
            break;
        case K_SIZE_LF:
            if (ch != '\n')
                return -1;
            i++;
            if (c->remaining == 0) {
                c->ks = K_TRAILER;
                c->trailer_line_len = 0;
            } else {
                c->ks = K_DATA;
            }
            break;
        case K_DATA: {
            size_t take = n - i < c->remaining ? n - i : (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0)
                c->ks = K_DATA_CR;
            break;
        }
        case K_DATA_CR:
            if (ch != '\r')
                return -1;
            c->ks = K_DATA_LF;
            i++;
            break;
        case K_DATA_LF:
            if (ch != '\n')
                return -1;
            c->ks = K_SIZE;
            c->remaining = 0;
            i++;
            break;
        case K_TRAILER:
            i++;
            if (ch == '\n') {
                if (c->trailer_line_len == 0) {
                    *done = 1;
                    return (ssize_t)i;
                }
                c->trailer_line_len = 0;
            } else if (ch != '\r') {
                c->trailer_line_len++;
            }
            break;
        }
    }
    return (ssize_t)i;
}

/* Feeds bytes of the response; returns 1 when it completed, 0 for more, -1 on a parse error.
 * Bytes past the end of the response are a parse error (nothing was pipelined). */
static int feed(struct conn *c, const char *p, size_t n)
{
    int done;
    if (c->state == C_BODY) {
        ssize_t used = body_bytes(c, p, n, &done);
        if (used < 0 || (done && (size_t)used != n))
            return -1;
        return done;
    }
    /* C_HEAD: p points into c->head at head_len - n. */
    for (;;) {
        size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
        char *end = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
        if (!end) {
            c->scanned = c->head_len;
            return c->head_len == HEAD_MAX ? -1 : 0;
        }
        size_t hlen = (size_t)(end - c->head) + 4;
        if (parse_head(c, hlen) != 0)
            return -1;
        size_t rest = c->head_len - hlen;
        if (c->status >= 100 && c->status < 200) { /* interim: the real head follows */
            memmove(c->head, c->head + hlen, rest);
            c->head_len = rest;
            c->scanned = 0;
            continue;
        }
        if (c->body == B_NONE)
            return rest ? -1 : 1;
        c->state = C_BODY;
        if (!rest)
            return 0;
        ssize_t used = body_bytes(c, c->head + hlen, rest, &done);
        if (used < 0 || (done && (size_t)used != rest))
            return -1;
        return done;
    }
}

static void drive(struct conn *c, uint32_t events)
{
    for (;;) {
        switch (c->state) {
        case C_CONNECTING: {
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return;
            int err = 0;
            socklen_t el = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
                c->w->errors[E_CONNECT]++;
                close_fd(c);
                c->state = C_WAIT;
                c->t_wake = now_ns() + RETRY_DELAY_NS;
                return;
            }
            begin_attempt(c);
            break;
        }
        case C_WRITING: {
            if (c->written == 0)
                c->t_write = now_ns(); /* the first send() of this attempt */
            ssize_t r = send(c->fd, g_request + c->written, g_request_len - c->written,
                             MSG_NOSIGNAL); /* a closed peer is EPIPE, not a SIGPIPE */
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR)
                    break;
                if (c->written == 0 && (errno == EPIPE || errno == ECONNRESET)) {
                    eof_before_response(c, E_WRITE);
                    if (c->state != C_WRITING)
                        return;
                    break;
                }
                fail(c, E_WRITE);
                return;
            }
            c->written += (size_t)r;
            if (c->written == g_request_len) {
                c->state = C_HEAD;
                c->head_len = c->scanned = 0;
            }
            break;
        }
        case C_HEAD:
        case C_BODY: {
            char buf[65536];
            char *dst;
            size_t room;
            if (c->state == C_HEAD) {
                dst = c->head + c->head_len;
                room = HEAD_MAX - c->head_len;
            } else {
                dst = buf;
                room = sizeof buf;
            }
            ssize_t r = read(c->fd, dst, room);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR)
                    break;
                if (c->state == C_HEAD && c->head_len == 0)
                    eof_before_response(c, E_READ);
                else
                    fail(c, E_READ);
                if (c->state != C_WRITING)
                    return;
                break;
            }
            if (r == 0) {
                if (c->state == C_BODY && c->body == B_CLOSE) {
                    complete(c);
                } else if (c->state == C_HEAD && c->head_len == 0) {
                    eof_before_response(c, E_READ);
                } else {
                    fail(c, E_READ);
                }
                if (c->state != C_WRITING)
                    return;
                break;
            }
            if (c->state == C_HEAD)
                c->head_len += (size_t)r;
            int done = feed(c, dst, (size_t)r);
            if (done < 0) {
                fail(c, E_PARSE);
                if (c->state != C_WRITING)
                    return;
            } else if (done) {
                complete(c);
                if (c->state != C_WRITING)
                    return;
            }
            break;
        }
        case C_WAIT:
        case C_DONE:
            return;
        }
    }
}

/* Timeouts and delayed reconnects; runs every few milliseconds. */
static void sweep(struct worker *w, int64_t now)
{
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->state == C_WAIT) {
            if (now >= c->t_wake) {
                if (g_end_ns && now >= g_end_ns) {
                    c->state = C_DONE;
                } else {
                    open_conn(c);
                    if (c->state == C_WRITING)
                        drive(c, EPOLLOUT);
                }
            }
        } else if (c->state != C_DONE && now - c->t_ready > g_timeout_ns) {
            fail(c, E_TIMEOUT);
            if (c->state == C_WRITING)
                drive(c, EPOLLOUT);
        } else if (c->state != C_DONE && g_end_ns && now >= g_end_ns) {
            close_fd(c); /* in flight at the end: not counted */
            c->state = C_DONE;
        }
    }
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    int64_t start = now_ns();
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        c->t_ready = start;
        if (!may_start(start)) {
            c->state = C_DONE;
            continue;
        }
        open_conn(c);
        if (c->state == C_WRITING)
            drive(c, EPOLLOUT);
    }
    struct epoll_event evs[256];
    int64_t last_sweep = start;
    for (;;) {
        unsigned live = 0;
        for (unsigned i = 0; i < w->nconns; i++)
            live += w->conns[i].state != C_DONE;
        if (!live)
            break;
        int n = epoll_wait(w->ep, evs, 256, 5);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(2);
        }
        for (int k = 0; k < n; k++) {
            unsigned idx = (unsigned)(evs[k].data.u64 & 0xffffffffu);
            uint32_t gen = (uint32_t)(evs[k].data.u64 >> 32);
            struct conn *c = &w->conns[idx];
            if (gen != c->gen || c->fd < 0)
                continue; /* an event of a socket closed earlier in this batch */
            drive(c, evs[k].events);
        }
        int64_t now = now_ns();
        if (now - last_sweep >= 5000000ll || (g_end_ns && now >= g_end_ns)) {
            sweep(w, now);
            last_sweep = now;
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted values, in ms. */
static double pct_ms(const struct lat *l, double p)
{
    if (!l->n)
        return 0;
    size_t rank = (size_t)((p / 100.0) * (double)l->n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return (double)l->v[rank - 1] / 1e6;
}

static void print_lat(const char *name, struct lat *l)
{
    qsort(l->v, l->n, sizeof *l->v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (double)l->v[i];
    printf("\"%s_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p99.9\":%.4f,\"max\":%.4f,"
           "\"mean\":%.4f}",
           name, pct_ms(l, 50), pct_ms(l, 90), pct_ms(l, 99), pct_ms(l, 99.9),
           l->n ? (double)l->v[l->n - 1] / 1e6 : 0.0, l->n ? sum / (double)l->n / 1e6 : 0.0);
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNS] [-t THREADS] [-d SECONDS] [-n REQUESTS] "
                    "[-T TIMEOUT_S] [-H 'Name: value']... HOST PORT PATH\n"
                    "  at least one of -d and -n; HOST is an IPv4 address\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned conns = 10, threads = 1;
    double duration = 0, timeout = 2.0;
    size_t hdr_len = 0;
    char headers[4096] = "";
    int opt;
    while ((opt = getopt(argc, argv, "c:t:d:n:T:H:")) != -1) {
        switch (opt) {
        case 'c':
            conns = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            duration = strtod(optarg, NULL);
            break;
        case 'n':
            g_max_requests = strtoll(optarg, NULL, 10);
            break;
        case 'T':
            timeout = strtod(optarg, NULL);
            break;
        case 'H': {
            size_t l = strlen(optarg);
            if (hdr_len + l + 3 > sizeof headers || memchr(optarg, '\r', l)
                || memchr(optarg, '\n', l))
                usage();
            memcpy(headers + hdr_len, optarg, l);
            memcpy(headers + hdr_len + l, "\r\n", 3);
            hdr_len += l + 2;
            break;
        }
        default:
            usage();
        }
    }
    if (argc - optind != 3 || conns == 0 || threads == 0 || threads > conns || timeout <= 0
        || (duration <= 0 && g_max_requests <= 0) || duration < 0 || g_max_requests < 0)
        usage();
    const char *host = argv[optind], *path = argv[optind + 2];
    long port = strtol(argv[optind + 1], NULL, 10);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &g_addr.sin_addr) != 1
        || path[0] != '/')
        usage();
    g_timeout_ns = (int64_t)(timeout * 1e9);
    size_t cap = strlen(path) + strlen(host) + hdr_len + 64;
    g_request = malloc(cap);
    if (!g_request)
        return 2;
    g_request_len = (size_t)snprintf(g_request, cap, "GET %s HTTP/1.1\r\nHost: %s:%ld\r\n%s\r\n",
                                     path, host, port, headers);

    struct worker *ws = calloc(threads, sizeof *ws);
    struct conn *cs = calloc(conns, sizeof *cs);
    if (!ws || !cs)
        return 2;
    int64_t t0 = now_ns();
    if (duration > 0)
        g_end_ns = t0 + (int64_t)(duration * 1e9);
    unsigned next = 0;
    for (unsigned t = 0; t < threads; t++) {
        struct worker *w = &ws[t];
        w->nconns = conns / threads + (t < conns % threads);
        w->conns = cs + next;
        next += w->nconns;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (w->ep < 0) {
            perror("loadgen: epoll_create1");
            return 2;
        }
        for (unsigned i = 0; i < w->nconns; i++) {
            w->conns[i].w = w;
            w->conns[i].idx = i;
            w->conns[i].fd = -1;
        }
    }
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&ws[t].tid, NULL, run_worker, &ws[t]) != 0) {
            fprintf(stderr, "loadgen: pthread_create failed\n");
            return 2;
        }
    }
    for (unsigned t = 0; t < threads; t++)
        pthread_join(ws[t].tid, NULL);
    int64_t t1 = now_ns();
    if (g_end_ns && t1 > g_end_ns)
        t1 = g_end_ns; /* what ran after the end was not counted */

    struct lat cycle = {0}, wr = {0};
    uint64_t requests = 0, non2xx = 0, errors[E_COUNT] = {0}, connects = 0, retries = 0;
    for (unsigned t = 0; t < threads; t++) {
        struct worker *w = &ws[t];
        requests += w->requests;
        non2xx += w->non2xx;
        connects += w->connects;
        retries += w->retries;
        for (int e = 0; e < E_COUNT; e++)
            errors[e] += w->errors[e];
        for (size_t i = 0; i < w->cycle.n; i++) {
            lat_push(&cycle, w->cycle.v[i]);
            lat_push(&wr, w->write.v[i]);
        }
        close(w->ep);
        free(w->cycle.v);
        free(w->write.v);
    }
    free(ws);
    free(cs);
    free(g_request);
    double secs = (double)(t1 - t0) / 1e9;
    uint64_t nerr = 0;
    for (int e = 0; e < E_COUNT; e++)
        nerr += errors[e];
    printf("{\"requests\":%llu,\"errors\":%llu,\"error_kinds\":{", (unsigned long long)requests,
           (unsigned long long)nerr);
    for (int e = 0; e < E_COUNT; e++)
        printf("%s\"%s\":%llu", e ? "," : "", err_names[e], (unsigned long long)errors[e]);
    printf("},\"non_2xx\":%llu,\"connects\":%llu,\"retries\":%llu,\"connections\":%u,"
           "\"threads\":%u,\"duration_s\":%.4f,\"rps\":%.2f,",
           (unsigned long long)non2xx, (unsigned long long)connects,
           (unsigned long long)retries, conns, threads, secs,
           secs > 0 ? (double)requests / secs : 0.0);
    print_lat("cycle", &cycle);
    printf(",");
    print_lat("write", &wr);
    printf("}\n");
    free(cycle.v);
    free(wr.v);
    return 0;
}
