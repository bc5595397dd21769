/*
 * wssub: many cheap WebSocket subscribers in one process (epoll, raw frames).
 *
 * The C twin of `python -m benchmarks.load sub`, with the same arguments and
 * the same JSON-lines control protocol on stdin/stdout:
 *   -> {"ready": {...}}          after all clients are open
 *   <- {"go": {"t0":s,"m0":s,"m1":s}}   measurement window (CLOCK_MONOTONIC s)
 *   <- {"finish": {"drain_s":s}}  drain, report, exit
 *   -> {"result": {...}}
 * Stdin EOF ends the process. Built by the harness with `cc -O2`; used by
 * default because a subscriber must cost far less per frame than the hub
 * (see benchmarks/README.md for the measured costs).
 *
 * --parallel 1 opens every client at once (nonblocking connects, then the
 * handshakes as they complete) instead of one after the other; --reconnect 1
 * drops every client on "go" and reopens them all at once (the harness has
 * restarted the hub meanwhile). Both report {"opened": {...}}: how many
 * opened, refused, reset or timed out (--connect-timeout s), and how long the
 * last one took.
 *
 * Client frames are masked with the all-zero key (legal; masking is then the
 * identity). Server frames are walked header to header; a payload is only
 * looked at for the sampled latency: value = send time in µs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int open;        /* handshake done */
    int closed;      /* close frame from server */
    int lost;        /* EOF / error */
    int stalled;
    uint64_t frames, in_window, k;
    char *carry;
    size_t ncarry, capcarry;
} conn_t;

static const char *host = "127.0.0.1", *path = "/", *protocol = NULL, *lat_out = NULL;
static int port = 0, nconns = 10, nstalled = 0, lat_every = 0;
static double settle = 0.3;
static int parallel = 0;   /* --parallel 1: open every client at once (nonblocking) */
static int reconnect = 0;  /* --reconnect 1: on "go", reopen every client at once */
static double connect_timeout = 30.0;
/* what the last parallel opening did (reported in ready/result) */
static struct {
    int ok, refused, reset, timeout, other;
    double all_open_s, p50_ms, p99_ms, max_ms;
} opened;
static const char *subscribe[8];
static int nsubscribe = 0;

static int64_t m0 = INT64_MAX, m1 = INT64_MAX;
static int64_t *lat = NULL;
static size_t nlat = 0, caplat = 0;
static conn_t *conns;
static int ep;
static char *rbuf;
#define RBUF (4 << 20)

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *msg) {
    fprintf(stderr, "wssub: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { usleep(100); continue; }
            return;
        }
        p += w; n -= (size_t)w;
    }
}

static void send_frame(int fd, int opcode, const char *payload, size_t n) {
    char hdr[14];
    size_t h = 0;
    hdr[h++] = (char)(0x80 | opcode);
    if (n < 126) hdr[h++] = (char)(0x80 | n);
    else if (n < 65536) { hdr[h++] = (char)(0x80 | 126); hdr[h++] = (char)(n >> 8); hdr[h++] = (char)n; }
    else { hdr[h++] = (char)(0x80 | 127); for (int s = 56; s >= 0; s -= 8) hdr[h++] = (char)(n >> s); }
    memset(hdr + h, 0, 4); h += 4;   /* zero masking key */
    char *buf = malloc(h + n);
    memcpy(buf, hdr, h);
    memcpy(buf + h, payload, n);
    send_all(fd, buf, h + n);
    free(buf);
}

static void add_lat(int64_t v) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[nlat++] = v;
}

/* Walk frames in p[0..n); returns bytes consumed. */
static size_t walk(conn_t *c, const unsigned char *p, size_t n, int64_t t) {
    size_t i = 0;
    uint64_t cnt = 0;
    while (n - i >= 2) {
        unsigned b0 = p[i];
        uint64_t ln = p[i + 1] & 127;
        size_t h = 2;
        if (ln == 126) {
            if (n - i < 4) break;
            ln = ((uint64_t)p[i + 2] << 8) | p[i + 3];
            h = 4;
        } else if (ln == 127) {
            if (n - i < 10) break;
            ln = 0;
            for (int j = 0; j < 8; j++) ln = (ln << 8) | p[i + 2 + j];
            h = 10;
        }
        if (ln > n - i - h) break;
        unsigned op = b0 & 15;
        const unsigned char *pl = p + i + h;
        if (op <= 2) {
            if (b0 & 0x80) {
                cnt++;
                if (lat_every && ++c->k >= (uint64_t)lat_every) {
                    c->k = 0;
                    const unsigned char *q = memmem(pl, ln, "\"value\"", 7);
                    if (q) {
                        q += 7;
                        const unsigned char *e = pl + ln;
                        while (q < e && (*q == ' ' || *q == ':')) q++;
                        int neg = 0;
                        if (q < e && *q == '-') { neg = 1; q++; }
                        int64_t v = 0;
                        int digits = 0;
                        while (q < e && *q >= '0' && *q <= '9') { v = v * 10 + (*q - '0'); q++; digits++; }
                        if (digits && !neg && v >= m0 && v <= m1) add_lat(t - v);
                    }
                }
            }
        } else if (op == 9) {
            send_frame(c->fd, 10, (const char *)pl, ln);
        } else if (op == 8) {
            c->closed = 1;
            send_frame(c->fd, 8, (const char *)pl, ln < 2 ? ln : 2);
        }
        i += h + ln;
    }
    c->frames += cnt;
    if (t >= m0 && t <= m1) c->in_window += cnt;
    return i;
}

static void on_readable(conn_t *c) {
    for (int rounds = 0; rounds < 4; rounds++) {
        size_t have = c->ncarry;
        if (have) memcpy(rbuf, c->carry, have);
        ssize_t r = recv(c->fd, rbuf + have, RBUF - have, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            r = 0;
        }
        if (r == 0) {
            c->lost = 1;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            return;
        }
        size_t n = have + (size_t)r;
        size_t used = walk(c, (unsigned char *)rbuf, n, now_us());
        size_t left = n - used;
        if (left > c->capcarry) {
            c->capcarry = left * 2;
            c->carry = realloc(c->carry, c->capcarry);
            if (!c->carry) die("realloc");
        }
        memcpy(c->carry, rbuf + used, left);
        c->ncarry = left;
        if (c->closed) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            return;
        }
        if ((size_t)r < (size_t)(RBUF - have)) return;  /* drained */
    }
}

static int open_one(conn_t *c, int rcvbuf) {
    for (int attempt = 0; attempt < 6; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        inet_pton(AF_INET, host, &a.sin_addr);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            close(fd);
            usleep(50000 << attempt);
            continue;
        }
        char req[1024];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                         path, host, port, protocol ? "Sec-WebSocket-Protocol: " : "",
                         protocol ? protocol : "", protocol ? "\r\n" : "");
        send_all(fd, req, (size_t)n);
        char resp[8192];
        size_t got = 0;
        char *end = NULL;
        while (!end && got < sizeof resp - 1) {
            ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
            resp[got] = 0;
            end = strstr(resp, "\r\n\r\n");
        }
        if (!end || !strstr(resp, " 101 ") || strstr(resp, " 101 ") > strstr(resp, "\r\n")) {
            close(fd);
            usleep(50000 << attempt);
            continue;
        }
        c->fd = fd;
        c->open = 1;
        size_t left = got - (size_t)(end + 4 - resp);
        if (left) {
            c->carry = malloc(left * 2);
            memcpy(c->carry, end + 4, left);
            c->ncarry = c->capcarry = left;
        }
        for (int s = 0; s < nsubscribe; s++) send_frame(fd, 1, subscribe[s], strlen(subscribe[s]));
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        return 0;
    }
    return -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void fail_kind(int err) {
    if (err == ECONNREFUSED) opened.refused++;
    else if (err == ECONNRESET || err == EPIPE) opened.reset++;
    else if (err == ETIMEDOUT) opened.timeout++;
    else opened.other++;
}

/*
 * Open clients [0, total) all at once, as dashboards do after a hub restart:
 * every connect() is issued before any handshake completes; a client whose
 * SYN the kernel drops retries on TCP's own timer (1 s, 3 s, 7 s, ...), so
 * the time until the last one is open shows whether the hub's backlog and
 * accept loop kept up. A failure is not retried: refusals are counted.
 */
static void open_parallel(int total) {
    memset(&opened, 0, sizeof opened);
    int cep = epoll_create1(0);
    int64_t *t_start = calloc((size_t)total, sizeof *t_start);
    int64_t *took = calloc((size_t)total, sizeof *took);
    int *state = calloc((size_t)total, sizeof *state);   /* 0 done, 1 connecting, 2 handshaking */
    char (*resp)[1024] = calloc((size_t)total, sizeof *resp);
    size_t *got = calloc((size_t)total, sizeof *got);
    if (!cep || !t_start || !took || !state || !resp || !got) die("calloc");
    char req[1024];
    int nreq = snprintf(req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                        path, host, port, protocol ? "Sec-WebSocket-Protocol: " : "",
                        protocol ? protocol : "", protocol ? "\r\n" : "");
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    int64_t t0 = now_us();
    int pending = 0, nok = 0;
    for (int i = 0; i < total; i++) {
        conn_t *c = &conns[i];
        c->fd = -1;
        c->open = 0;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0) { fail_kind(errno); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (c->stalled) { int rb = 4096; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb); }
        t_start[i] = now_us();
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
            fail_kind(errno);
            close(fd);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
        epoll_ctl(cep, EPOLL_CTL_ADD, fd, &ev);
        c->fd = fd;
        state[i] = 1;
        pending++;
    }
    int64_t deadline = t0 + (int64_t)(connect_timeout * 1e6);
    struct epoll_event evs[512];
    while (pending && now_us() < deadline) {
        int n = epoll_wait(cep, evs, 512, 50);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u64;
            conn_t *c = &conns[i];
            int err = 0;
            if (state[i] == 1) {
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (!err) {
                    if (send(c->fd, req, (size_t)nreq, MSG_NOSIGNAL) != nreq) err = errno ? errno : EPIPE;
                }
                if (!err) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
                    epoll_ctl(cep, EPOLL_CTL_MOD, c->fd, &ev);
                    state[i] = 2;
                    continue;
                }
            } else {
                ssize_t r = recv(c->fd, resp[i] + got[i], sizeof resp[i] - 1 - got[i], 0);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (r <= 0) err = r < 0 ? errno : ECONNRESET;
                else {
                    got[i] += (size_t)r;
                    resp[i][got[i]] = 0;
                    char *end = strstr(resp[i], "\r\n\r\n");
                    if (!end) {
                        if (got[i] < sizeof resp[i] - 1) continue;
                        err = EPROTO;
                    } else if (!strstr(resp[i], " 101 ") || strstr(resp[i], " 101 ") > strstr(resp[i], "\r\n")) {
                        err = EPROTO;
                    } else {
                        took[nok++] = now_us() - t_start[i];
                        opened.all_open_s = (now_us() - t0) / 1e6;
                        epoll_ctl(cep, EPOLL_CTL_DEL, c->fd, NULL);
                        c->open = 1;
                        size_t left = got[i] - (size_t)(end + 4 - resp[i]);
                        c->ncarry = 0;
                        if (left) {
                            if (left > c->capcarry) {
                                c->capcarry = left * 2;
                                c->carry = realloc(c->carry, c->capcarry);
                                if (!c->carry) die("realloc");
                            }
                            memcpy(c->carry, end + 4, left);
                            c->ncarry = left;
                        }
                        state[i] = 0;
                        pending--;
                        continue;
                    }
                }
            }
            fail_kind(err);
            epoll_ctl(cep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            state[i] = 0;
            pending--;
        }
    }
    for (int i = 0; i < total; i++) {
        if (state[i]) {   /* still connecting or waiting for the 101 */
            opened.timeout++;
            close(conns[i].fd);
            conns[i].fd = -1;
        }
    }
    opened.ok = nok;
    if (nok) {
        qsort(took, (size_t)nok, sizeof *took, cmp_i64);
        opened.p50_ms = took[(nok - 1) / 2] / 1000.0;
        opened.p99_ms = took[(int)((nok - 1) * 0.99)] / 1000.0;
        opened.max_ms = took[nok - 1] / 1000.0;
    }
    close(cep);
    free(t_start); free(took); free(state); free(resp); free(got);
}

static void watch(conn_t *c, int idx) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    if (c->ncarry) {   /* frames that came with the handshake response */
        size_t used = walk(c, (unsigned char *)c->carry, c->ncarry, now_us());
        memmove(c->carry, c->carry + used, c->ncarry - used);
        c->ncarry -= used;
    }
}

#define STDIN_TAG UINT64_MAX
static char line[65536];
static size_t nline = 0;
static int want_finish = 0, stdin_eof = 0;
static double drain_s = 2.0;

static double jnum(const char *s, const char *key, double dflt) {
    const char *p = strstr(s, key);
    if (!p) return dflt;
    p = strchr(p + strlen(key), ':');
    return p ? strtod(p + 1, NULL) : dflt;
}

static void on_stdin(void) {
    ssize_t r = read(0, line + nline, sizeof line - 1 - nline);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        stdin_eof = 1;
        epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
        return;
    }
    nline += (size_t)r;
    line[nline] = 0;
    char *nl;
    while ((nl = strchr(line, '\n'))) {
        *nl = 0;
        if (strstr(line, "\"go\"")) {
            m0 = (int64_t)(jnum(line, "\"m0\"", 0) * 1e6);
            m1 = (int64_t)(jnum(line, "\"m1\"", 0) * 1e6);
        } else if (strstr(line, "\"finish\"")) {
            drain_s = jnum(line, "\"drain_s\"", 2.0);
            want_finish = 1;
        }
        size_t rest = nline - (size_t)(nl + 1 - line);
        memmove(line, nl + 1, rest);
        nline = rest;
        line[nline] = 0;
    }
}

static void loop_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == STDIN_TAG) on_stdin();
        else {
            conn_t *c = &conns[evs[i].data.u64];
            if (c->fd >= 0) on_readable(c);
        }
    }
}

static uint64_t total_frames(void) {
    uint64_t t = 0;
    for (int i = 0; i < nconns; i++) t += conns[i].frames;
    return t;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* After a parallel opening: subscribe frames out, readable clients watched. */
static void start_open(int total) {
    for (int i = 0; i < total; i++) {
        conn_t *c = &conns[i];
        if (!c->open || c->fd < 0) continue;
        for (int s = 0; s < nsubscribe; s++) send_frame(c->fd, 1, subscribe[s], strlen(subscribe[s]));
        if (!c->stalled) watch(c, i);
    }
}

/* --reconnect: drop every client (the hub restarted), then reopen all at once. */
static void reopen_all(int total) {
    for (int i = 0; i < total; i++) {
        conn_t *c = &conns[i];
        if (c->fd >= 0) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
        c->fd = -1;
        c->open = c->closed = c->lost = 0;
        c->ncarry = 0;
    }
    open_parallel(total);
    start_open(total);
}

static void print_opened(const char *key) {
    printf("\"%s\": {\"ok\": %d, \"refused\": %d, \"reset\": %d, \"timeout\": %d, \"other\": %d, "
           "\"all_open_s\": %.3f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}",
           key, opened.ok, opened.refused, opened.reset, opened.timeout, opened.other, opened.all_open_s,
           opened.p50_ms, opened.p99_ms, opened.max_ms);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--path")) path = v;
        else if (!strcmp(k, "--protocol")) protocol = v;
        else if (!strcmp(k, "--conns")) nconns = atoi(v);
        else if (!strcmp(k, "--stalled")) nstalled = atoi(v);
        else if (!strcmp(k, "--lat-every")) lat_every = atoi(v);
        else if (!strcmp(k, "--lat-out")) lat_out = v;
        else if (!strcmp(k, "--settle")) settle = atof(v);
        else if (!strcmp(k, "--subscribe") && nsubscribe < 8) subscribe[nsubscribe++] = v;
        else if (!strcmp(k, "--parallel")) parallel = atoi(v);
        else if (!strcmp(k, "--reconnect")) reconnect = atoi(v);
        else if (!strcmp(k, "--connect-timeout")) connect_timeout = atof(v);
        /* --concurrency, --loop: accepted for compatibility, unused */
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    ep = epoll_create1(0);
    rbuf = malloc(RBUF);
    int total = nconns + nstalled;
    conns = calloc((size_t)total, sizeof *conns);
    int64_t started = now_us();
    int failed = 0;
    for (int i = 0; i < total; i++) {
        conns[i].fd = -1;
        conns[i].stalled = i >= nconns;
    }
    if (parallel) {
        open_parallel(total);
        failed = total - opened.ok;
        start_open(total);
    } else {
        for (int i = 0; i < total; i++) {
            if (open_one(&conns[i], conns[i].stalled ? 4096 : 0) < 0) { failed++; continue; }
            if (!conns[i].stalled) watch(&conns[i], i);
            if ((i & 63) == 63) loop_once(0);   /* keep up with snapshots while connecting */
        }
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
    int64_t until = now_us() + (int64_t)(settle * 1e6);
    while (now_us() < until) loop_once(20);
    int connected = 0;
    for (int i = 0; i < nconns; i++) connected += conns[i].open;
    printf("{\"ready\": {\"connected\": %d, \"failed\": %d, \"errors\": [], \"connect_s\": %.3f, ",
           connected, failed, (now_us() - started) / 1e6);
    print_opened("opened");
    printf("}}\n");
    fflush(stdout);

    uint64_t at_go = 0;
    int have_go = 0;
    while (!want_finish && !stdin_eof) {
        loop_once(50);
        if (!have_go && m0 != INT64_MAX) {
            have_go = 1;
            if (reconnect) reopen_all(total);
            at_go = total_frames();
        }
    }
    if (stdin_eof && !want_finish) return 0;
    if (!have_go) {   /* "go" and "finish" came in one read */
        if (m0 != INT64_MAX && reconnect) reopen_all(total);
        at_go = total_frames();
    }
    /* drain until quiet */
    int64_t deadline = now_us() + (int64_t)(drain_s * 1e6);
    uint64_t last = (uint64_t)-1;
    while (now_us() < deadline) {
        uint64_t t = total_frames();
        if (t == last) break;
        last = t;
        int64_t step = now_us() + 150000;
        while (now_us() < step) loop_once(20);
    }
    /* the stalled clients: read again for a second, did the hub close them? */
    char stalled_json[4096] = "";
    size_t sj = 0;
    for (int i = nconns; i < total; i++) {
        conn_t *c = &conns[i];
        if (c->fd < 0) continue;
        uint64_t before = c->frames;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        watch(c, i);
        int64_t end = now_us() + 1000000;
        while (now_us() < end) loop_once(20);
        sj += (size_t)snprintf(stalled_json + sj, sizeof stalled_json - sj,
                               "%s{\"closed_by_server\": %s, \"lost\": %s, \"frames_after_resume\": %llu}",
                               sj ? ", " : "", c->closed ? "true" : "false", c->lost ? "true" : "false",
                               (unsigned long long)(c->frames - before));
    }
    uint64_t in_window = 0, mn = UINT64_MAX, mx = 0, closed = 0, lost = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (!c->open) continue;
        in_window += c->in_window;
        if (c->in_window < mn) mn = c->in_window;
        if (c->in_window > mx) mx = c->in_window;
        closed += (uint64_t)c->closed;
        lost += (uint64_t)c->lost;
    }
    if (mn == UINT64_MAX) mn = 0;
    if (lat_out) {
        FILE *f = fopen(lat_out, "wb");
        if (f) { fwrite(lat, sizeof *lat, nlat, f); fclose(f); }
    }
    uint64_t tf = total_frames();
    printf("{\"result\": {\"conns\": %d, \"in_window\": %llu, \"per_conn_min\": %llu, \"per_conn_max\": %llu, "
           "\"frames_total\": %llu, \"frames_after_go\": %llu, \"closed_by_server\": %llu, \"lost\": %llu, "
           "\"lat_samples\": %zu, \"stalled\": [%s], \"cpu_s\": %.4f, ",
           connected, (unsigned long long)in_window, (unsigned long long)mn, (unsigned long long)mx,
           (unsigned long long)tf, (unsigned long long)(tf - at_go), (unsigned long long)closed,
           (unsigned long long)lost, nlat, stalled_json, cpu_s());
    print_opened("opened");
    printf("}}\n");
    fflush(stdout);
    return 0;
}
