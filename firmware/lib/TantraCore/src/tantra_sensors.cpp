#include "tantra_sensors.h"

namespace tantra {

double soil_percent(uint16_t raw, uint16_t raw_dry, uint16_t raw_wet) {
  if (raw_dry == raw_wet) return 0.0;  // uncalibrated: say nothing useful
  double pct = (static_cast<double>(raw_dry) - static_cast<double>(raw)) * 100.0 /
               (static_cast<double>(raw_dry) - static_cast<double>(raw_wet));
  if (pct < 0.0) return 0.0;
  if (pct > 100.0) return 100.0;
  return pct;
}

double divider_volts(uint16_t raw, double vref, uint16_t adc_max, double ratio) {
  if (adc_max == 0) return 0.0;
  return static_cast<double>(raw) * vref / static_cast<double>(adc_max) * ratio;
}

double rpm_from_pulses(uint32_t pulses, uint32_t elapsed_ms, uint16_t pulses_per_rev) {
  if (elapsed_ms == 0 || pulses_per_rev == 0) return 0.0;
  return static_cast<double>(pulses) * 60000.0 /
         (static_cast<double>(elapsed_ms) * static_cast<double>(pulses_per_rev));
}

}  // namespace tantra
