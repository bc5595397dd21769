// Declarations only: the slice of the ESP8266 Arduino core's API that
// esp8266.ino uses, so `make esp-check` can type-check the sketch on a
// machine without that core. Nothing here is ever linked or run.
#ifndef TANTRA_STUB_ARDUINO_H
#define TANTRA_STUB_ARDUINO_H

#include <stddef.h>
#include <stdint.h>

uint32_t millis();
void yield();

class HardwareSerial {
 public:
  void begin(unsigned long baud);
  size_t setRxBufferSize(size_t size);
  int available();
  int read();
  size_t print(const char* s);
  size_t println(const char* s);
};
extern HardwareSerial Serial;

#endif
