// Declarations only (see Arduino.h here): the ESP8266 core's EEPROM (flash-backed).
#ifndef TANTRA_STUB_EEPROM_H
#define TANTRA_STUB_EEPROM_H

#include <stddef.h>
#include <stdint.h>

class EEPROMClass {
 public:
  void begin(size_t size);
  uint8_t read(int address);
  void write(int address, uint8_t value);
  bool commit();
};
extern EEPROMClass EEPROM;

#endif
