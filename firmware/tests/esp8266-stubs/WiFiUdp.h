// Declarations only (see Arduino.h here): WiFiUDP.
#ifndef TANTRA_STUB_WIFIUDP_H
#define TANTRA_STUB_WIFIUDP_H

#include <stddef.h>
#include <stdint.h>

class WiFiUDP {
 public:
  uint8_t begin(uint16_t port);
  int beginPacket(const char* host, uint16_t port);
  size_t write(const uint8_t* buffer, size_t size);
  int endPacket();
  int parsePacket();
  uint16_t remotePort();
  int read(unsigned char* buffer, size_t len);
  void flush();
};

#endif
