// ESP8266: reads JSON readings from the Mega on its serial RX, stamps this
// device's name and a seq, and delivers them to the Tantra hub over raw TCP
// or UDP until acknowledged. All of that logic is TantraCore's (host-tested,
// and run end to end against a real hub by the host build in ../host/);
// this file only adapts Wi-Fi, sockets, the clock and the RNG.
//
// Its own log (JSON lines) goes out on TX, which is wired to the Mega's RX1;
// the Mega shows it on its USB port.
#include <EEPROM.h>
#include <ESP8266WiFi.h>
#include <WiFiUdp.h>
#include <TantraCore.h>

// Settings live in secrets.h (copy secrets.example.h); a build may name
// another file with -DTANTRA_SETTINGS='"file.h"'.
#ifndef TANTRA_SETTINGS
#if defined(__has_include)
#if !__has_include("secrets.h")
#error "Copy secrets.example.h to secrets.h and fill in your Wi-Fi and hub settings."
#endif
#endif
#define TANTRA_SETTINGS "secrets.h"
#endif
#include TANTRA_SETTINGS

#ifndef HUB_TOKEN
#define HUB_TOKEN ""  // settings from before --auth: no token
#endif

namespace {

class SerialLog : public tantra::Log {
 public:
  void write(const char* line) { Serial.println(line); }
};

// Raw TCP over WiFiClient. connect() blocks for at most the client timeout.
class WifiStream : public tantra::StreamPort {
 public:
  bool connect() {
    client_.stop();
    if (WiFi.status() != WL_CONNECTED) return false;
    client_.setTimeout(3000);
    if (!client_.connect(HUB_HOST, HUB_PORT)) return false;
    client_.setNoDelay(true);  // readings are small; send them now
    return true;
  }
  int write(const char* data, size_t len) {
    if (!client_.connected()) return -1;
    // Never block the loop: take only what fits in the TCP window.
    size_t room = client_.availableForWrite();
    if (room == 0) return 0;
    size_t n = len < room ? len : room;
    return static_cast<int>(client_.write(reinterpret_cast<const uint8_t*>(data), n));
  }
  int read(char* buf, size_t cap) {
    int avail = client_.available();
    if (avail > 0) {
      size_t n = static_cast<size_t>(avail) < cap ? static_cast<size_t>(avail) : cap;
      return client_.read(reinterpret_cast<uint8_t*>(buf), n);
    }
    return client_.connected() ? 0 : -1;
  }
  void close() { client_.stop(); }

 private:
  WiFiClient client_;
};

// UDP over WiFiUDP; replies from anyone but the hub are ignored.
class WifiDatagrams : public tantra::DatagramPort {
 public:
  void begin() { udp_.begin(UDP_LOCAL_PORT); }  // the hub replies to this port
  bool send(const char* data, size_t len) {
    if (WiFi.status() != WL_CONNECTED) return false;
    if (!udp_.beginPacket(HUB_HOST, HUB_PORT)) return false;
    udp_.write(reinterpret_cast<const uint8_t*>(data), len);
    return udp_.endPacket() == 1;
  }
  int recv(char* buf, size_t cap) {
    int size = udp_.parsePacket();
    if (size <= 0) return 0;
    if (udp_.remotePort() != HUB_PORT) {
      udp_.flush();  // not from the hub
      return 0;
    }
    return udp_.read(reinterpret_cast<uint8_t*>(buf), cap);
  }

 private:
  WiFiUDP udp_;
};

// The boot counter (the seq epoch) in the emulated EEPROM (one flash
// sector): magic, epoch, and its complement, so a blank or torn sector
// reads as "nothing stored". One commit per boot, and one per `replayed`
// epoch (at most one per UDP epoch_min_interval_ms).
class EepromEpochStore : public tantra::EpochStore {
 public:
  static const int kSize = 12;
  void begin() { EEPROM.begin(kSize); }
  bool load(uint32_t* epoch) {
    if (get(0) != kMagic) return false;
    uint32_t value = get(4);
    if (get(8) != ~value) return false;
    *epoch = value;
    return true;
  }
  bool save(uint32_t epoch) {
    put(0, kMagic);
    put(4, epoch);
    put(8, ~epoch);
    return EEPROM.commit();
  }

 private:
  static const uint32_t kMagic = 0x54454e31u;  // "TEN1"
  uint32_t get(int at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(EEPROM.read(at + i)) << (8 * i);
    return v;
  }
  void put(int at, uint32_t v) {
    for (int i = 0; i < 4; ++i) EEPROM.write(at + i, static_cast<uint8_t>(v >> (8 * i)));
  }
};

// Everything static: no heap on the device path.
tantra::Pending g_slots[QUEUE_SLOTS];
tantra::Stats g_stats;
tantra::Outbox g_outbox(g_slots, QUEUE_SLOTS, g_stats);
SerialLog g_log;
tantra::Forwarder* g_forwarder;  // built in setup(), after the RNG is up
uint32_t g_next_stats_ms = 0;
wl_status_t g_wifi_status = WL_IDLE_STATUS;

#if HUB_USE_UDP
WifiDatagrams g_port;
#else
WifiStream g_port;
#endif

void report_wifi() {
  wl_status_t status = WiFi.status();
  if (status == g_wifi_status) return;
  g_wifi_status = status;
  tantra::log_event(&g_log, status == WL_CONNECTED ? "wifi_up" : "wifi_down", -1,
                    status == WL_CONNECTED ? WiFi.localIP().toString().c_str() : 0);
}

void print_stats() {
  char body[400];
  if (tantra::format_stats(g_stats, g_outbox.size(), body, sizeof body)) {
    Serial.print("{\"event\":\"stats\",\"stats\":");
    Serial.print(body);
    Serial.println("}");
  }
}

}  // namespace

void setup() {
  // A TCP connect to an unreachable hub blocks loop() for up to 3 s; the
  // default 256-byte RX buffer would overflow with the Mega's lines meanwhile.
  Serial.setRxBufferSize(1024);
  Serial.begin(SERIAL_BAUD);
  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);

  // seq = epoch << 32 | counter, the epoch one up at every boot (saved in
  // flash first), so a rebooted board never reuses a seq the hub saw from
  // it. A blank flash starts at a random epoch below 2^16.
  static EepromEpochStore store;
  store.begin();
  static tantra::SeqSource seq(store);
  tantra::SeqSource::Result begun = seq.begin(ESP.random() & 0xFFFFu);
  static tantra::XorShift32 rng(ESP.random());
  static tantra::HmacSha256 key;
  if (HUB_TOKEN[0]) key.set_key(HUB_TOKEN, sizeof HUB_TOKEN - 1);
#if HUB_USE_UDP
  static tantra::Backoff backoff(UDP_RETRY_BASE_MS, UDP_RETRY_MAX_MS, rng);
  tantra::UdpConfig cfg = tantra::default_udp_config();
  cfg.retry_base_ms = UDP_RETRY_BASE_MS;
  cfg.retry_max_ms = UDP_RETRY_MAX_MS;
  cfg.max_tries = UDP_MAX_TRIES;
  cfg.key = HUB_TOKEN[0] ? &key : 0;  // signed datagrams under --auth
  cfg.seqs = &seq;                    // `replayed` -> a new epoch
  g_port.begin();
  static tantra::UdpLink link(g_port, g_outbox, DEVICE_NAME, backoff, cfg, g_stats, &g_log);
#else
  static tantra::Backoff backoff(TCP_BACKOFF_BASE_MS, TCP_BACKOFF_MAX_MS, rng);
  tantra::TcpConfig cfg = tantra::default_tcp_config();
  cfg.backoff_base_ms = TCP_BACKOFF_BASE_MS;
  cfg.backoff_max_ms = TCP_BACKOFF_MAX_MS;
  cfg.token = HUB_TOKEN;  // the auth line first, when there is one
  static tantra::TcpLink link(g_port, g_outbox, DEVICE_NAME, backoff, cfg, g_stats, &g_log);
#endif
  static tantra::Forwarder forwarder(seq, g_outbox, link, g_stats, &g_log);
  g_forwarder = &forwarder;
  if (begun != tantra::SeqSource::kOk) {
    tantra::log_event(&g_log, begun == tantra::SeqSource::kExhausted ? "seq_exhausted" : "epoch_not_saved",
                      "epoch", seq.epoch(), 0);
  }
  tantra::log_event(&g_log, "start", "seq_start", static_cast<int64_t>(seq.peek()), DEVICE_NAME);
}

void loop() {
  char buf[64];
  size_t n = 0;
  while (n < sizeof buf && Serial.available() > 0) buf[n++] = static_cast<char>(Serial.read());
  if (n) g_forwarder->feed(buf, n);

  report_wifi();
  uint32_t now = millis();
  g_forwarder->poll(now);

  if (STATS_EVERY_MS && tantra::time_reached(now, g_next_stats_ms)) {
    g_next_stats_ms = now + STATS_EVERY_MS;
    print_stats();
  }
  yield();  // let the Wi-Fi stack run
}
