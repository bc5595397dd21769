// Every setting and calibration constant of the Mega sketch, in one place.
// Each is #ifndef-guarded so a build can override it with -D (the simavr
// test does nothing of the sort: it runs exactly these defaults).
#ifndef TANTRA_MEGA_CONFIG_H
#define TANTRA_MEGA_CONFIG_H

// ---- timing and links -------------------------------------------------------
// How often one reading of each sensor is written to the ESP8266.
#ifndef SAMPLE_PERIOD_MS
#define SAMPLE_PERIOD_MS 2000UL
#endif
// Serial1 (TX1 = pin 18, RX1 = pin 19) to the ESP8266; the ESP sketch uses
// the same rate.
#ifndef ESP_BAUD
#define ESP_BAUD 115200UL
#endif
// Serial (USB) shows the same lines, plus what the ESP8266 logs back.
#ifndef USB_BAUD
#define USB_BAUD 115200UL
#endif

// ---- soil moisture (capacitive probe on A0) ---------------------------------
#ifndef SOIL_PIN
#define SOIL_PIN A0
#endif
// Raw ADC counts with the probe in dry air and in a glass of water; measure
// yours and put them here (the formula also works for resistive probes,
// where dry reads low).
#ifndef SOIL_RAW_DRY
#define SOIL_RAW_DRY 620
#endif
#ifndef SOIL_RAW_WET
#define SOIL_RAW_WET 280
#endif

// ---- turbine speed (hall sensor / reed switch on an interrupt pin) ----------
// Mega interrupt pins: 2, 3, 18, 19, 20, 21; 18/19 are Serial1, so not those.
#ifndef RPM_PIN
#define RPM_PIN 2
#endif
// Magnets (pulses) per revolution.
#ifndef RPM_PULSES_PER_REV
#define RPM_PULSES_PER_REV 2
#endif
// Pulses closer together than this are contact bounce, not a magnet
// (2000 us = 30000 pulses/min, far above any small turbine).
#ifndef RPM_DEBOUNCE_US
#define RPM_DEBOUNCE_US 2000UL
#endif

// ---- turbine voltage (through a resistor divider on A1) ---------------------
#ifndef VOLT_PIN
#define VOLT_PIN A1
#endif
// (R1 + R2) / R2 of the divider: R1 = 100k from the turbine, R2 = 10k to GND
// gives 11, so up to 55 V maps onto the ADC's 0-5 V.
#ifndef VOLT_DIVIDER_RATIO
#define VOLT_DIVIDER_RATIO 11.0
#endif
// The ADC reference in volts: the Mega's 5 V rail (measure it for accuracy).
#ifndef ADC_VREF
#define ADC_VREF 5.0
#endif

// ADC samples averaged per reading, to calm down noise on long wires.
#ifndef ADC_OVERSAMPLE
#define ADC_OVERSAMPLE 8
#endif

// ---- names on the wire -------------------------------------------------------
// Sensor names (1-64 chars of [A-Za-z0-9_-]) and units (<= 16 chars).
#define SOIL_SENSOR "soilMoisture"
#define SOIL_UNIT "%"
#define RPM_SENSOR "turbineRpm"
#define RPM_UNIT "rpm"
#define VOLT_SENSOR "turbineVoltage"
#define VOLT_UNIT "V"

#endif
