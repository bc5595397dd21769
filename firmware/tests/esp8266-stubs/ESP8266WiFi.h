// Declarations only (see Arduino.h here): WiFi, WiFiClient, ESP.
#ifndef TANTRA_STUB_ESP8266WIFI_H
#define TANTRA_STUB_ESP8266WIFI_H

#include <stddef.h>
#include <stdint.h>

class String {
 public:
  const char* c_str() const;
};

class IPAddress {
 public:
  String toString() const;
};

enum wl_status_t { WL_IDLE_STATUS = 0, WL_CONNECTED = 3, WL_DISCONNECTED = 6 };
enum WiFiMode_t { WIFI_OFF = 0, WIFI_STA = 1 };

class ESP8266WiFiClass {
 public:
  bool mode(WiFiMode_t m);
  bool setAutoReconnect(bool on);
  wl_status_t begin(const char* ssid, const char* passphrase);
  wl_status_t status();
  IPAddress localIP();
};
extern ESP8266WiFiClass WiFi;

class WiFiClient {
 public:
  int connect(const char* host, uint16_t port);
  uint8_t connected();
  size_t write(const uint8_t* buf, size_t size);
  size_t availableForWrite();
  int available();
  int read(uint8_t* buf, size_t size);
  void stop();
  void setNoDelay(bool nodelay);
  void setTimeout(unsigned long ms);
};

class EspClass {
 public:
  uint32_t random();
};
extern EspClass ESP;

#endif
