/*
 * sendmany: the whole broadcast loop in C, called once per turn from Python
 * (mb_uring.py's "cloop" row): one send(MSG_DONTWAIT|MSG_NOSIGNAL) per fd, the
 * result (bytes or -errno) per fd in res[], returns how many were not sent whole
 * so the caller scans res[] only when there is something to hand to Twisted.
 *   cc -O2 -shared -fPIC -o /tmp/sendmany.so benchmarks/experiments/sendmany.c
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>
int sendmany(int n, const int *fds, const char *buf, size_t len, long *res) {
    int short_ = 0;
    for (int i = 0; i < n; i++) {
        ssize_t r = send(fds[i], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        res[i] = r < 0 ? -errno : r;
        short_ += (size_t)r != len;
    }
    return short_;
}
