/*
 * wsrelay: the physical limit of a WebSocket fan-out on this machine.
 *
 * A minimal relay in C, run by the harness as the third hub ("limit"): it
 * accepts the same load generators as Tantra and the Node relay (wssub.c
 * subscribers, the Python publisher), and for every read from a client that
 * carries whole data frames it writes those frames, unmasked, as one buffer
 * to every open client (the sender too: the publisher paces on its echo, as
 * with the other hubs), in connection order: one `send` per client per read.
 * That is what Tantra does per reactor turn, without anything else: no
 * parsing, validation, cache, Python or allocation per client. Whatever a
 * hub does beyond this is its own cost; `fanout-1000-tick1` reports Tantra
 * as a fraction of this (issue 14, item 3).
 *
 * Deliberately not a WebSocket server for anything else: the handshake
 * answers only the fixed Sec-WebSocket-Key our load generators send (its
 * Sec-WebSocket-Accept is RFC 6455's example), anything else gets 400.
 * Client frames must be masked and unfragmented (ours are). A client whose
 * unsent data passes 64 MiB is dropped. Listens on 127.0.0.1 only; prints
 * "limit listening on 127.0.0.1:PORT" once ready; SIGTERM ends it.
 *
 *   wsrelay [--port N] [--backlog N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define MAX_PENDING (64u << 20)
#define RBUF (1 << 20)

typedef struct {
    int fd;
    int open;        /* handshake answered */
    int pos;         /* index in the open list, -1 if not in it */
    char *in;        /* unparsed input (handshake, or a partial frame) */
    size_t nin, capin;
    char *out;       /* unsent output: order is kept behind it */
    size_t nout, capout;
} conn_t;

static int ep;
static conn_t **byfd;        /* fd -> conn */
static int maxfd;
static int *openfds;         /* open clients in connection order */
static int nopen;
static unsigned char *rbuf, *obuf;

static void die(const char *m) {
    fprintf(stderr, "wsrelay: %s: %s\n", m, strerror(errno));
    exit(2);
}

static void append(char **buf, size_t *n, size_t *cap, const void *p, size_t k) {
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *n + k) c *= 2;
        *buf = realloc(*buf, c);
        if (!*buf) die("realloc");
        *cap = c;
    }
    memcpy(*buf + *n, p, k);
    *n += k;
}

static void drop(conn_t *c) {
    if (c->pos >= 0) {   /* keep connection order: shift the rest down */
        memmove(openfds + c->pos, openfds + c->pos + 1, (size_t)(nopen - c->pos - 1) * sizeof *openfds);
        nopen--;
        for (int i = c->pos; i < nopen; i++) byfd[openfds[i]]->pos = i;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    byfd[c->fd] = NULL;
    free(c->in);
    free(c->out);
    free(c);
}

/* Send what is queued; returns -1 if the client was dropped. */
static int flush_out(conn_t *c) {
    while (c->nout) {
        ssize_t w = send(c->fd, c->out, c->nout, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            drop(c);
            return -1;
        }
        memmove(c->out, c->out + w, c->nout - (size_t)w);
        c->nout -= (size_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->nout ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* One send, or queue behind what is pending; returns -1 if dropped. */
static int write_to(conn_t *c, const void *p, size_t n) {
    if (!c->nout) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w == (ssize_t)n) return 0;
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) { drop(c); return -1; }
            w = 0;
        }
        append(&c->out, &c->nout, &c->capout, (const char *)p + w, n - (size_t)w);
        return flush_out(c);
    }
    if (c->nout + n > MAX_PENDING) { drop(c); return -1; }
    append(&c->out, &c->nout, &c->capout, p, n);
    return 0;
}

static void broadcast(const unsigned char *p, size_t n) {
    /* a drop shifts the list: walk a copy */
    static int *snap;
    static int capsnap;
    if (nopen > capsnap) {
        capsnap = nopen * 2;
        snap = realloc(snap, (size_t)capsnap * sizeof *snap);
        if (!snap) die("realloc");
    }
    int k = nopen;
    memcpy(snap, openfds, (size_t)k * sizeof *snap);
    for (int i = 0; i < k; i++) {
        conn_t *c = byfd[snap[i]];
        if (c) write_to(c, p, n);
    }
}

static int handshake(conn_t *c) {
    char *end = memmem(c->in, c->nin, "\r\n\r\n", 4);
    if (!end) return c->nin > 16384 ? -1 : 0;
    size_t used = (size_t)(end + 4 - c->in);
    int ok = memmem(c->in, used, KEY, strlen(KEY)) != NULL;
    static const char good[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n";
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (!ok) {
        send(c->fd, bad, sizeof bad - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        return -1;
    }
    if (write_to(c, good, sizeof good - 1) < 0) return -2;
    c->open = 1;
    c->pos = nopen;
    openfds[nopen++] = c->fd;
    memmove(c->in, c->in + used, c->nin - used);
    c->nin -= used;
    return 1;
}

/* Unmask the whole client frames in c->in into obuf as server frames;
 * answer pings and closes. Returns bytes of data frames in obuf, -1 to drop. */
static long frames(conn_t *c, size_t *cap) {
    unsigned char *p = (unsigned char *)c->in;
    size_t n = c->nin, i = 0, o = 0;
    while (n - i >= 2) {
        unsigned b0 = p[i], b1 = p[i + 1];
        uint64_t ln = b1 & 127;
        size_t h = 2;
        if (ln == 126) { if (n - i < 4) break; ln = ((uint64_t)p[i + 2] << 8) | p[i + 3]; h = 4; }
        else if (ln == 127) {
            if (n - i < 10) break;
            ln = 0;
            for (int j = 0; j < 8; j++) ln = (ln << 8) | p[i + 2 + j];
            h = 10;
        }
        if (!(b1 & 0x80)) return -1;          /* clients must mask */
        if (ln > (16u << 20)) return -1;
        if (n - i < h + 4 + ln) break;
        const unsigned char *mask = p + i + h, *pl = mask + 4;
        unsigned op = b0 & 15;
        size_t sh = ln < 126 ? 2 : ln < 65536 ? 4 : 10;
        if (o + sh + ln > *cap) {
            while (o + sh + ln > *cap) *cap *= 2;
            obuf = realloc(obuf, *cap);
            if (!obuf) die("realloc");
        }
        unsigned char *f = obuf + o;
        f[0] = (unsigned char)(0x80 | op);
        if (ln < 126) f[1] = (unsigned char)ln;
        else if (ln < 65536) { f[1] = 126; f[2] = (unsigned char)(ln >> 8); f[3] = (unsigned char)ln; }
        else { f[1] = 127; for (int j = 0; j < 8; j++) f[2 + j] = (unsigned char)(ln >> (56 - 8 * j)); }
        for (size_t j = 0; j < ln; j++) f[sh + j] = pl[j] ^ mask[j & 3];
        if (op == 1 || op == 2) {
            if (b0 & 0x80) o += sh + ln;      /* relay it */
        } else if (op == 9) {                  /* ping -> pong */
            f[0] = 0x8A;
            if (write_to(c, f, sh + ln) < 0) return -2;
        } else if (op == 8) {                  /* close -> echo the code, then drop */
            f[0] = 0x88;
            write_to(c, f, sh + ln);
            return -1;
        }
        i += h + 4 + ln;
    }
    memmove(c->in, c->in + i, n - i);
    c->nin = n - i;
    return (long)o;
}

static void on_readable(conn_t *c) {
    static size_t capo = RBUF;
    ssize_t r = recv(c->fd, rbuf, RBUF, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) { drop(c); return; }
    append(&c->in, &c->nin, &c->capin, rbuf, (size_t)r);
    if (!c->open) {
        int h = handshake(c);
        if (h == -1) { drop(c); return; }
        if (h <= 0) return;
    }
    long o = frames(c, &capo);
    if (o == -1) { drop(c); return; }
    if (o == -2) return;
    if (o > 0) broadcast(obuf, (size_t)o);
}

int main(int argc, char **argv) {
    int port = 0, backlog = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--backlog")) backlog = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    maxfd = (int)rl.rlim_cur;
    byfd = calloc((size_t)maxfd, sizeof *byfd);
    openfds = calloc((size_t)maxfd, sizeof *openfds);
    rbuf = malloc(RBUF);
    obuf = malloc(RBUF);
    if (!byfd || !openfds || !rbuf || !obuf) die("malloc");

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, backlog) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("limit listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (cfd < 0) break;
                    if (cfd >= maxfd) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    if (!c) die("calloc");
                    c->fd = cfd;
                    c->pos = -1;
                    byfd[cfd] = c;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            conn_t *c = byfd[fd];
            if (!c) continue;
            if (evs[i].events & EPOLLOUT) { if (flush_out(c) < 0) continue; }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
