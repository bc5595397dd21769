// Scripted network ports and a log recorder for the link tests.
#ifndef TANTRA_TEST_FAKES_H
#define TANTRA_TEST_FAKES_H

#include <string.h>

#include <deque>
#include <string>
#include <vector>

#include "tantra_link.h"
#include "tantra_log.h"
#include "tantra_rng.h"

struct FakeStream : tantra::StreamPort {
  bool accept_connect = true;
  bool is_open = false;
  int connects = 0;
  int closes = 0;
  size_t write_budget = 1 << 20;  // bytes accepted per write() call
  bool write_broken = false;
  bool peer_closed = false;
  std::string written;        // everything written, all connections
  std::string incoming;       // bytes the "hub" will send
  bool connect() {
    ++connects;
    if (!accept_connect) return false;
    is_open = true;
    peer_closed = false;
    write_broken = false;
    return true;
  }
  int write(const char* data, size_t len) {
    if (!is_open || write_broken) return -1;
    size_t n = len < write_budget ? len : write_budget;
    written.append(data, n);
    return static_cast<int>(n);
  }
  int read(char* buf, size_t cap) {
    if (!is_open) return -1;
    if (incoming.empty()) return peer_closed ? -1 : 0;
    size_t n = incoming.size() < cap ? incoming.size() : cap;
    memcpy(buf, incoming.data(), n);
    incoming.erase(0, n);
    return static_cast<int>(n);
  }
  void close() {
    ++closes;
    is_open = false;
  }
  // Lines written, split on '\n'.
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i < written.size(); ++i) {
      if (written[i] == '\n') {
        out.push_back(written.substr(start, i - start));
        start = i + 1;
      }
    }
    return out;
  }
};

struct FakeDatagrams : tantra::DatagramPort {
  std::vector<std::string> sent;
  std::deque<std::string> replies;
  bool send(const char* data, size_t len) {
    sent.push_back(std::string(data, len));
    return true;
  }
  int recv(char* buf, size_t cap) {
    if (replies.empty()) return 0;
    std::string r = replies.front();
    replies.pop_front();
    size_t n = r.size() < cap ? r.size() : cap;
    memcpy(buf, r.data(), n);
    return static_cast<int>(n);
  }
};

struct RecordingLog : tantra::Log {
  std::vector<std::string> lines;
  void write(const char* line) { lines.push_back(line); }
  bool saw(const std::string& needle) const {
    for (size_t i = 0; i < lines.size(); ++i)
      if (lines[i].find(needle) != std::string::npos) return true;
    return false;
  }
};

// Always the same value: makes jittered delays exact in tests.
struct ConstRng : tantra::Rng {
  uint32_t value = 0;
  uint32_t next() { return value; }
};

// "seq":N out of a formatted line.
inline long long seq_of(const std::string& line) {
  size_t p = line.find("\"seq\":");
  if (p == std::string::npos) return -1;
  return atoll(line.c_str() + p + 6);
}

#endif
