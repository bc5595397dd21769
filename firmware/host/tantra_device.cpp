// Host build of the ESP8266 firmware: the same core (Forwarder, Outbox,
// TcpLink/UdpLink) behind POSIX sockets, with stdin as the Mega's serial
// line. Used by the end-to-end tests against a real hub, and handy on a
// laptop with the Mega on USB:
//
//   stty -F /dev/ttyACM0 115200 raw
//   build/tantra-device --device farm-1 --transport tcp < /dev/ttyACM0
//
// With the hub's --auth: --token-file FILE holds the device token (first
// line; never on the command line, where `ps` shows it). TCP then sends the
// auth line first, UDP signs every datagram. --boot-file FILE keeps the
// boot counter (the seq epoch) as the ESP8266 keeps it in flash; without
// it every run starts at a random epoch below 2^16.
//
// Events and counters go to stderr as JSON lines; the last one is
// {"event":"stats",...}. Exit status: 0 when every reading was acknowledged
// (or rejected/dropped, as counted), 3 if some were still unacknowledged when
// --linger-ms ran out after the end of input, 2 on bad arguments.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "TantraCore.h"

namespace {

const size_t kMaxQueue = 4096;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

uint32_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000u +
                               static_cast<uint64_t>(ts.tv_nsec) / 1000000u);
}

// What the ESP8266 gets from its hardware RNG: 32 random bits.
uint32_t urandom32() {
  uint32_t v = 0;
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) v = 0;
    close(fd);
  }
  if (v == 0) v = static_cast<uint32_t>(time(0)) ^ static_cast<uint32_t>(getpid()) << 16;
  return v;
}

// The boot counter in a file: one decimal line, replaced atomically (write
// a temporary file, fsync, rename) so a crash leaves the old or the new
// value, never half of one.
class FileEpochStore : public tantra::EpochStore {
 public:
  explicit FileEpochStore(const char* path) : path_(path) {}
  bool load(uint32_t* epoch) {
    FILE* f = fopen(path_, "r");
    if (!f) return false;
    unsigned long v = 0;
    int got = fscanf(f, "%lu", &v);
    fclose(f);
    if (got != 1 || v > 0xFFFFFFFFul) return false;
    *epoch = static_cast<uint32_t>(v);
    return true;
  }
  bool save(uint32_t epoch) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path_) >= static_cast<int>(sizeof tmp)) return false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    char text[16];
    int n = snprintf(text, sizeof text, "%lu\n", static_cast<unsigned long>(epoch));
    bool ok = write(fd, text, static_cast<size_t>(n)) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path_) != 0) {
      unlink(tmp);
      return false;
    }
    return true;
  }

 private:
  const char* path_;
};

// The token: the first line of a file, without its line end.
bool read_token(const char* path, char* out, size_t cap) {
  FILE* f = fopen(path, "r");
  if (!f) return false;
  bool ok = fgets(out, static_cast<int>(cap), f) != 0;
  fclose(f);
  if (!ok) return false;
  size_t n = strlen(out);
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) out[--n] = '\0';
  // A line that filled the buffer was cut: refuse it rather than send half.
  return n > 0 && n + 1 < cap;
}

class StderrLog : public tantra::Log {
 public:
  void write(const char* line) {
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
  }
};

bool resolve(const char* host, uint16_t port, int socktype, struct sockaddr_storage* out,
             socklen_t* out_len) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  char service[8];
  snprintf(service, sizeof service, "%u", static_cast<unsigned>(port));
  struct addrinfo* res = 0;
  if (getaddrinfo(host, service, &hints, &res) != 0 || !res) return false;
  memcpy(out, res->ai_addr, res->ai_addrlen);
  *out_len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// Non-blocking TCP socket; connect() waits at most connect_timeout_ms.
class PosixStream : public tantra::StreamPort {
 public:
  PosixStream(const struct sockaddr_storage& addr, socklen_t len, int timeout_ms)
      : addr_(addr), len_(len), timeout_ms_(timeout_ms), fd_(-1) {}
  ~PosixStream() { close(); }

  bool connect() {
    close();
    fd_ = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    int rc = ::connect(fd_, reinterpret_cast<const struct sockaddr*>(&addr_), len_);
    if (rc != 0 && errno != EINPROGRESS) {
      close();
      return false;
    }
    if (rc != 0) {
      struct pollfd p = {fd_, POLLOUT, 0};
      int err = 0;
      socklen_t elen = sizeof err;
      if (::poll(&p, 1, timeout_ms_) != 1 ||
          getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        close();
        return false;
      }
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small lines, now
    return true;
  }
  int write(const char* data, size_t len) {
    if (fd_ < 0) return -1;
    ssize_t n = send(fd_, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return static_cast<int>(n);
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
  }
  int read(char* buf, size_t cap) {
    if (fd_ < 0) return -1;
    ssize_t n = recv(fd_, buf, cap, MSG_DONTWAIT);
    if (n > 0) return static_cast<int>(n);
    if (n == 0) return -1;  // orderly close by the hub
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

 private:
  struct sockaddr_storage addr_;
  socklen_t len_;
  int timeout_ms_;
  int fd_;
};

// A connected UDP socket: only the hub's replies reach us, and ICMP "port
// unreachable" while the hub is down shows up as ECONNREFUSED, ignored.
class PosixDatagrams : public tantra::DatagramPort {
 public:
  PosixDatagrams() : fd_(-1) {}
  ~PosixDatagrams() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool open(const struct sockaddr_storage& addr, socklen_t len) {
    fd_ = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd_ >= 0 && ::connect(fd_, reinterpret_cast<const struct sockaddr*>(&addr), len) == 0;
  }
  bool send(const char* data, size_t len) {
    return ::send(fd_, data, len, MSG_DONTWAIT) == static_cast<ssize_t>(len);
  }
  int recv(char* buf, size_t cap) {
    ssize_t n = ::recv(fd_, buf, cap, MSG_DONTWAIT);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNREFUSED) return 0;
    return -1;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

struct Options {
  const char* host;
  unsigned port;
  bool udp;
  const char* device;
  unsigned long queue;
  unsigned long backoff_base_ms, backoff_max_ms, keepalive_ms;
  unsigned long udp_retry_base_ms, udp_retry_max_ms, udp_tries;
  unsigned long linger_ms;
  unsigned long stats_ms;
  bool has_first_epoch;
  unsigned long first_epoch;
  const char* token_file;
  const char* boot_file;
  unsigned long auth_retry_ms, resend_after_ms, epoch_interval_ms;
};

void usage() {
  fprintf(stderr,
          "usage: tantra-device [--host H] [--port P] [--transport tcp|udp] [--device NAME]\n"
          "         [--queue N] [--backoff-base-ms N] [--backoff-max-ms N] [--keepalive-ms N]\n"
          "         [--udp-retry-base-ms N] [--udp-retry-max-ms N] [--udp-tries N]\n"
          "         [--linger-ms N] [--stats-ms N] [--first-epoch N]\n"
          "         [--token-file FILE] [--boot-file FILE] [--auth-retry-ms N]\n"
          "         [--resend-after-ms N] [--epoch-interval-ms N]   < serial-lines\n");
}

bool parse_ulong(const char* s, unsigned long max, unsigned long* out) {
  char* end = 0;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || !end || *end || end == s || v > max) return false;
  *out = v;
  return true;
}

bool parse_args(int argc, char** argv, Options* o) {
  tantra::TcpConfig tcp = tantra::default_tcp_config();
  tantra::UdpConfig udp = tantra::default_udp_config();
  o->host = "127.0.0.1";
  o->port = 9000;
  o->udp = false;
  o->device = "farm-1";
  o->queue = 64;  // what the ESP8266 sketch uses
  o->backoff_base_ms = tcp.backoff_base_ms;
  o->backoff_max_ms = tcp.backoff_max_ms;
  o->keepalive_ms = tcp.keepalive_ms;
  o->udp_retry_base_ms = udp.retry_base_ms;
  o->udp_retry_max_ms = udp.retry_max_ms;
  o->udp_tries = udp.max_tries;
  o->linger_ms = 10000;
  o->stats_ms = 0;
  o->has_first_epoch = false;
  o->first_epoch = 0;
  o->token_file = 0;
  o->boot_file = 0;
  o->auth_retry_ms = tcp.auth_retry_ms;
  o->resend_after_ms = tcp.resend_after_ms;
  o->epoch_interval_ms = udp.epoch_min_interval_ms;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    unsigned long n = 0;
    if (!strcmp(a, "--host")) {
      o->host = v;
    } else if (!strcmp(a, "--device")) {
      o->device = v;
    } else if (!strcmp(a, "--transport")) {
      if (!strcmp(v, "udp")) {
        o->udp = true;
      } else if (!strcmp(v, "tcp")) {
        o->udp = false;
      } else {
        return false;
      }
    } else if (!strcmp(a, "--port")) {
      if (!parse_ulong(v, 65535, &n) || n == 0) return false;
      o->port = static_cast<unsigned>(n);
    } else if (!strcmp(a, "--queue")) {
      if (!parse_ulong(v, kMaxQueue, &o->queue) || o->queue == 0) return false;
    } else if (!strcmp(a, "--backoff-base-ms")) {
      if (!parse_ulong(v, 3600000, &o->backoff_base_ms)) return false;
    } else if (!strcmp(a, "--backoff-max-ms")) {
      if (!parse_ulong(v, 3600000, &o->backoff_max_ms)) return false;
    } else if (!strcmp(a, "--keepalive-ms")) {
      if (!parse_ulong(v, 3600000, &o->keepalive_ms)) return false;
    } else if (!strcmp(a, "--udp-retry-base-ms")) {
      if (!parse_ulong(v, 3600000, &o->udp_retry_base_ms)) return false;
    } else if (!strcmp(a, "--udp-retry-max-ms")) {
      if (!parse_ulong(v, 3600000, &o->udp_retry_max_ms)) return false;
    } else if (!strcmp(a, "--udp-tries")) {
      if (!parse_ulong(v, 255, &o->udp_tries) || o->udp_tries == 0) return false;
    } else if (!strcmp(a, "--linger-ms")) {
      if (!parse_ulong(v, 3600000, &o->linger_ms)) return false;
    } else if (!strcmp(a, "--stats-ms")) {
      if (!parse_ulong(v, 3600000, &o->stats_ms)) return false;
    } else if (!strcmp(a, "--first-epoch")) {
      if (!parse_ulong(v, tantra::kEpochMax, &o->first_epoch)) return false;
      o->has_first_epoch = true;
    } else if (!strcmp(a, "--token-file")) {
      o->token_file = v;
    } else if (!strcmp(a, "--boot-file")) {
      o->boot_file = v;
    } else if (!strcmp(a, "--auth-retry-ms")) {
      if (!parse_ulong(v, 3600000, &o->auth_retry_ms)) return false;
    } else if (!strcmp(a, "--resend-after-ms")) {
      if (!parse_ulong(v, 3600000, &o->resend_after_ms)) return false;
    } else if (!strcmp(a, "--epoch-interval-ms")) {
      if (!parse_ulong(v, 3600000, &o->epoch_interval_ms)) return false;
    } else {
      return false;
    }
  }
  return tantra::valid_name(o->device);
}

void print_stats(const tantra::Stats& stats, size_t queued) {
  char body[512];
  if (tantra::format_stats(stats, static_cast<uint32_t>(queued), body, sizeof body)) {
    fprintf(stderr, "{\"event\":\"stats\",\"stats\":%s}\n", body);
    fflush(stderr);
  }
}

}  // namespace

// The shell owns storage (as the sketch does with static arrays) and the loop.
static tantra::Pending g_slots[kMaxQueue];

int main(int argc, char** argv) {
  Options opt;
  if (!parse_args(argc, argv, &opt)) {
    usage();
    return 2;
  }
  struct sockaddr_storage addr;
  socklen_t addr_len = 0;
  if (!resolve(opt.host, static_cast<uint16_t>(opt.port), opt.udp ? SOCK_DGRAM : SOCK_STREAM, &addr,
               &addr_len)) {
    fprintf(stderr, "{\"event\":\"error\",\"detail\":\"cannot resolve host\"}\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, 0);
  sigaction(SIGINT, &sa, 0);
  signal(SIGPIPE, SIG_IGN);

  static char token[160];
  if (opt.token_file && !read_token(opt.token_file, token, sizeof token)) {
    fprintf(stderr, "{\"event\":\"error\",\"detail\":\"cannot read a token from --token-file\"}\n");
    return 2;
  }
  StderrLog log;
  tantra::MemoryEpochStore memory_store;
  FileEpochStore file_store(opt.boot_file ? opt.boot_file : "");
  tantra::EpochStore& store = opt.boot_file ? static_cast<tantra::EpochStore&>(file_store)
                                            : static_cast<tantra::EpochStore&>(memory_store);
  tantra::SeqSource seq(store);
  uint32_t first_epoch =
      opt.has_first_epoch ? static_cast<uint32_t>(opt.first_epoch) : (urandom32() & 0xFFFFu);
  if (seq.begin(first_epoch) != tantra::SeqSource::kOk) {
    tantra::log_event(&log, "epoch_not_saved", "epoch", seq.epoch(), opt.boot_file);
  }
  tantra::XorShift32 rng(urandom32());
  tantra::Stats stats = tantra::Stats();
  tantra::Outbox outbox(g_slots, opt.queue, stats);
  tantra::HmacSha256 key;
  if (token[0]) key.set_key(token, strlen(token));

  PosixStream stream(addr, addr_len, 1000);
  PosixDatagrams datagrams;
  tantra::TcpConfig tcp_cfg = tantra::default_tcp_config();
  tcp_cfg.backoff_base_ms = opt.backoff_base_ms;
  tcp_cfg.backoff_max_ms = opt.backoff_max_ms;
  tcp_cfg.keepalive_ms = opt.keepalive_ms;
  tcp_cfg.token = token;
  tcp_cfg.auth_retry_ms = opt.auth_retry_ms;
  tcp_cfg.resend_after_ms = opt.resend_after_ms;
  tantra::UdpConfig udp_cfg = tantra::default_udp_config();
  udp_cfg.retry_base_ms = opt.udp_retry_base_ms;
  udp_cfg.retry_max_ms = opt.udp_retry_max_ms;
  udp_cfg.max_tries = static_cast<uint8_t>(opt.udp_tries);
  udp_cfg.key = token[0] ? &key : 0;
  udp_cfg.seqs = &seq;
  udp_cfg.resend_after_ms = opt.resend_after_ms;
  udp_cfg.epoch_min_interval_ms = opt.epoch_interval_ms;
  tantra::Backoff backoff(opt.udp ? opt.udp_retry_base_ms : opt.backoff_base_ms,
                          opt.udp ? opt.udp_retry_max_ms : opt.backoff_max_ms, rng);
  tantra::TcpLink tcp(stream, outbox, opt.device, backoff, tcp_cfg, stats, &log);
  tantra::UdpLink udp(datagrams, outbox, opt.device, backoff, udp_cfg, stats, &log);
  if (opt.udp && !datagrams.open(addr, addr_len)) {
    fprintf(stderr, "{\"event\":\"error\",\"detail\":\"cannot open UDP socket\"}\n");
    return 2;
  }
  tantra::Link& link = opt.udp ? static_cast<tantra::Link&>(udp) : static_cast<tantra::Link&>(tcp);
  tantra::Forwarder forwarder(seq, outbox, link, stats, &log);

  fprintf(stderr,
          "{\"event\":\"start\",\"device\":\"%s\",\"transport\":\"%s\",\"host\":\"%s\",\"port\":%u,"
          "\"queue\":%lu,\"auth\":%s,\"epoch\":%lu,\"seq_start\":%llu}\n",
          opt.device, opt.udp ? "udp" : "tcp", opt.host, opt.port, opt.queue,
          token[0] ? "true" : "false", static_cast<unsigned long>(seq.epoch()),
          static_cast<unsigned long long>(seq.peek()));
  fflush(stderr);

  bool input_open = true;
  uint32_t eof_at = 0;
  uint32_t next_stats = now_ms() + opt.stats_ms;
  int status = 0;
  while (!g_stop) {
    uint32_t now = now_ms();
    forwarder.poll(now);
    if (!input_open) {
      if (forwarder.idle()) break;
      if (tantra::time_reached(now, eof_at + opt.linger_ms)) {
        status = 3;
        break;
      }
    }
    if (opt.stats_ms && tantra::time_reached(now, next_stats)) {
      print_stats(stats, outbox.size());
      next_stats = now + opt.stats_ms;
    }
    // Sleep until input, a reply, or 10 ms (the links' timers are coarse).
    struct pollfd fds[2];
    nfds_t nfds = 0;
    if (input_open) {
      fds[nfds].fd = STDIN_FILENO;
      fds[nfds].events = POLLIN;
      ++nfds;
    }
    int net_fd = opt.udp ? datagrams.fd() : stream.fd();
    if (net_fd >= 0) {
      fds[nfds].fd = net_fd;
      fds[nfds].events = POLLIN;
      ++nfds;
    }
    if (::poll(fds, nfds, 10) < 0 && errno != EINTR) break;
    if (input_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[512];
      ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
      if (n > 0) {
        forwarder.feed(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        input_open = false;
        eof_at = now_ms();
        tantra::log_event(&log, "input_closed", -1, 0);
      }
    }
  }
  print_stats(stats, outbox.size());
  return status;
}
