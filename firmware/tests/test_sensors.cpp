#include <doctest/doctest.h>

#include "tantra_sensors.h"

using namespace tantra;

TEST_CASE("soil: dry reads high, wet low, clamped to 0..100") {
  CHECK(soil_percent(800, 800, 400) == doctest::Approx(0));
  CHECK(soil_percent(400, 800, 400) == doctest::Approx(100));
  CHECK(soil_percent(600, 800, 400) == doctest::Approx(50));
  CHECK(soil_percent(1023, 800, 400) == doctest::Approx(0));
  CHECK(soil_percent(0, 800, 400) == doctest::Approx(100));
  CHECK(soil_percent(500, 500, 500) == doctest::Approx(0));  // uncalibrated
  // Resistive probes are the other way round; the formula still holds.
  CHECK(soil_percent(300, 200, 700) == doctest::Approx(20));
}

TEST_CASE("divider volts") {
  CHECK(divider_volts(1023, 5.0, 1023, 11.0) == doctest::Approx(55.0));
  CHECK(divider_volts(0, 5.0, 1023, 11.0) == doctest::Approx(0));
  CHECK(divider_volts(512, 5.0, 1023, 1.0) == doctest::Approx(2.502444));
  CHECK(divider_volts(512, 5.0, 0, 1.0) == doctest::Approx(0));
}

TEST_CASE("rpm from pulses") {
  CHECK(rpm_from_pulses(100, 1000, 2) == doctest::Approx(3000));
  CHECK(rpm_from_pulses(1, 60000, 1) == doctest::Approx(1));
  CHECK(rpm_from_pulses(0, 1000, 2) == doctest::Approx(0));
  CHECK(rpm_from_pulses(5, 0, 2) == doctest::Approx(0));
  CHECK(rpm_from_pulses(5, 1000, 0) == doctest::Approx(0));
  CHECK(rpm_from_pulses(0xFFFFFFFFu, 1, 1) > 0);
}
