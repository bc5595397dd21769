// Arduino Mega: samples soil moisture, turbine RPM and turbine voltage and
// writes one JSON reading per line on Serial1 to the ESP8266, e.g.
//   {"sensor":"soilMoisture","value":42.5,"unit":"%"}
// The ESP8266 adds device and seq. Conversions and JSON formatting live in
// the TantraCore library (host-tested); this file only touches hardware.
#include <TantraCore.h>

#include "config.h"

namespace {

volatile uint32_t g_pulses = 0;
volatile uint32_t g_last_pulse_us = 0;
uint32_t g_last_sample_ms = 0;

// Counts turbine pulses; runs in interrupt context, so it stays tiny.
void on_pulse() {
  uint32_t now = micros();
  if (now - g_last_pulse_us >= RPM_DEBOUNCE_US) {
    ++g_pulses;
    g_last_pulse_us = now;
  }
}

uint16_t read_adc(uint8_t pin) {
  uint32_t sum = 0;
  for (uint8_t i = 0; i < ADC_OVERSAMPLE; ++i) sum += analogRead(pin);
  return static_cast<uint16_t>((sum + ADC_OVERSAMPLE / 2) / ADC_OVERSAMPLE);
}

// Formats one reading; a value that is not finite or a line that does not
// fit is not sent (and says so on USB), never sent half-made.
void emit(const char* sensor, double value, uint8_t decimals, const char* unit) {
  char line[96];
  tantra::JsonWriter w(line, sizeof line);
  w.begin_object();
  w.key("sensor");
  w.string(sensor);
  w.key("value");
  w.number(value, decimals);
  w.key("unit");
  w.string(unit);
  w.end_object();
  w.newline();
  if (!w.ok()) {
    Serial.print(F("# not sent: "));
    Serial.println(sensor);
    return;
  }
  Serial1.write(line, w.length());
  Serial.write(line, w.length());
}

}  // namespace

void setup() {
  Serial.begin(USB_BAUD);
  Serial1.begin(ESP_BAUD);
  pinMode(RPM_PIN, INPUT_PULLUP);
  attachInterrupt(digitalPinToInterrupt(RPM_PIN), on_pulse, FALLING);
  g_last_sample_ms = millis();
}

void loop() {
  // Whatever the ESP8266 logs comes back on RX1: show it on USB.
  while (Serial1.available() > 0) Serial.write(static_cast<uint8_t>(Serial1.read()));

  uint32_t now = millis();
  uint32_t elapsed = now - g_last_sample_ms;
  if (elapsed < SAMPLE_PERIOD_MS) return;
  g_last_sample_ms = now;

  noInterrupts();
  uint32_t pulses = g_pulses;
  g_pulses = 0;
  interrupts();

  emit(SOIL_SENSOR, tantra::soil_percent(read_adc(SOIL_PIN), SOIL_RAW_DRY, SOIL_RAW_WET), 1,
       SOIL_UNIT);
  emit(RPM_SENSOR, tantra::rpm_from_pulses(pulses, elapsed, RPM_PULSES_PER_REV), 0, RPM_UNIT);
  emit(VOLT_SENSOR, tantra::divider_volts(read_adc(VOLT_PIN), ADC_VREF, 1023, VOLT_DIVIDER_RATIO),
       2, VOLT_UNIT);
}
