// Unit conversions for the Mega's sensors, as pure functions so the host
// tests pin them down; the sketch only reads pins and counts pulses.
#ifndef TANTRA_SENSORS_H
#define TANTRA_SENSORS_H

#include <stdint.h>

namespace tantra {

// Capacitive soil probes read HIGH when dry and LOW when wet, so the two
// calibration points are raw ADC counts in air (dry) and in water (wet).
// Returns 0..100 %, clamped (a probe is never drier than air).
double soil_percent(uint16_t raw, uint16_t raw_dry, uint16_t raw_wet);

// Voltage at the top of a divider: the ADC sees v * R2 / (R1 + R2).
// `ratio` is (R1 + R2) / R2; `vref` the ADC reference in volts;
// `adc_max` 1023 on the Mega's 10-bit ADC.
double divider_volts(uint16_t raw, double vref, uint16_t adc_max, double ratio);

// Revolutions per minute from pulses counted over `elapsed_ms`.
// 0 when nothing can be said (no time passed, no pulses per revolution).
double rpm_from_pulses(uint32_t pulses, uint32_t elapsed_ms, uint16_t pulses_per_rev);

}  // namespace tantra

#endif
