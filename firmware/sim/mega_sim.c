/*
 * Runs the Mega firmware ELF in simavr (Debian's libsimavr) as a tiny test
 * bench: known millivolts on A0/A1, a square wave on pin 2 (PE4/INT4) as the
 * turbine's pulses, and the two serial ports captured separately.
 *
 *   mega-sim FIRMWARE.elf [--lines N] [--max-ms MS] [--soil-mv MV]
 *            [--volt-mv MV] [--pulse-hz HZ]
 *
 * stdout: every line the firmware writes on Serial1 (to the ESP8266), as is.
 * stderr: Serial (USB) lines prefixed "usb: ", then a summary.
 * Stops after N lines on Serial1 or MS of *simulated* time, whichever comes
 * first, so a run is deterministic and bounded whatever the host's speed.
 * Exit 0 when N lines were seen, 1 when time ran out, 2 on usage errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_cycle_timers.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "sim_time.h"

#define LINE_MAX_BYTES 512

typedef struct {
  char name;          /* '0' (USB) or '1' (ESP8266) */
  char buf[LINE_MAX_BYTES];
  size_t len;
  unsigned long lines;
} uart_capture_t;

static uart_capture_t g_uart0 = {'0', {0}, 0, 0};
static uart_capture_t g_uart1 = {'1', {0}, 0, 0};
static avr_irq_t *g_pulse_pin;
static uint32_t g_half_period_us;
static int g_pulse_level = 1;
static unsigned long g_pulses;

static void on_uart_byte(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  uart_capture_t *u = (uart_capture_t *)param;
  char c = (char)value;
  if (c == '\n') {
    /* Lines end in "\n" (ours) or "\r\n" (println); print without either. */
    if (u->len > 0 && u->buf[u->len - 1] == '\r') u->len--;
    u->buf[u->len] = '\0';
    if (u->name == '1') {
      fprintf(stdout, "%s\n", u->buf);
      fflush(stdout);
    } else {
      fprintf(stderr, "usb: %s\n", u->buf);
    }
    u->len = 0;
    u->lines++;
  } else if (u->len + 1 < sizeof u->buf) {
    u->buf[u->len++] = c;
  }
}

/* Square wave on the RPM pin: each falling edge is one pulse. */
static avr_cycle_count_t toggle_pulse(struct avr_t *avr, avr_cycle_count_t when, void *param) {
  (void)param;
  g_pulse_level = !g_pulse_level;
  if (!g_pulse_level) g_pulses++;
  avr_raise_irq(g_pulse_pin, (uint32_t)g_pulse_level);
  return when + avr_usec_to_cycles(avr, g_half_period_us);
}

static void capture_uart(avr_t *avr, uart_capture_t *u) {
  uint32_t flags = 0;
  /* simavr prints UART output on the console by default; we want it raw. */
  avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS(u->name), &flags);
  flags &= ~AVR_UART_FLAG_STDIO;
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS(u->name), &flags);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(u->name), UART_IRQ_OUTPUT),
                          on_uart_byte, u);
}

static void log_to_stderr(struct avr_t *avr, const int level, const char *format, va_list ap) {
  if (avr && level > avr->log) return;
  vfprintf(stderr, format, ap);
}

static int arg_ulong(const char *s, unsigned long *out) {
  char *end = NULL;
  unsigned long v = strtoul(s, &end, 10);
  if (!end || *end || end == s) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  unsigned long want_lines = 9, max_ms = 10000, soil_mv = 2000, volt_mv = 1000, pulse_hz = 50;
  if (argc < 2) goto usage;
  for (int i = 2; i < argc; i += 2) {
    unsigned long *target = NULL;
    if (!strcmp(argv[i], "--lines")) target = &want_lines;
    else if (!strcmp(argv[i], "--max-ms")) target = &max_ms;
    else if (!strcmp(argv[i], "--soil-mv")) target = &soil_mv;
    else if (!strcmp(argv[i], "--volt-mv")) target = &volt_mv;
    else if (!strcmp(argv[i], "--pulse-hz")) target = &pulse_hz;
    if (!target || i + 1 >= argc || !arg_ulong(argv[i + 1], target)) goto usage;
  }

  /* stdout is for the firmware's lines only: simavr's own messages (it
   * prints "Loaded N .text" while reading the ELF) go to stderr. */
  avr_global_logger_set(log_to_stderr);
  fflush(stdout);
  int saved_stdout = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);
  elf_firmware_t fw;
  memset(&fw, 0, sizeof fw);
  int read_rc = elf_read_firmware(argv[1], &fw);
  fflush(stdout);
  dup2(saved_stdout, STDOUT_FILENO);
  close(saved_stdout);
  if (read_rc != 0) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  avr_t *avr = avr_make_mcu_by_name("atmega2560");
  if (!avr) {
    fprintf(stderr, "simavr has no atmega2560 core\n");
    return 2;
  }
  avr_init(avr);
  avr->frequency = 16000000;
  avr->vcc = avr->avcc = avr->aref = 5000; /* ADC reference: 5 V, as on the board */
  avr->log = LOG_ERROR;
  avr_load_firmware(avr, &fw);

  capture_uart(avr, &g_uart0);
  capture_uart(avr, &g_uart1);

  /* simavr keeps the last value raised on an ADC channel (millivolts). */
  avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0), (uint32_t)soil_mv);
  avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC1), (uint32_t)volt_mv);

  g_pulse_pin = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('E'), 4); /* Mega pin 2 */
  if (pulse_hz > 0) {
    g_half_period_us = (uint32_t)(500000UL / pulse_hz);
    avr_raise_irq(g_pulse_pin, 1);
    avr_cycle_timer_register_usec(avr, g_half_period_us, toggle_pulse, NULL);
  }

  avr_cycle_count_t limit = (avr_cycle_count_t)max_ms * (avr->frequency / 1000);
  int state = cpu_Running;
  while (state != cpu_Done && state != cpu_Crashed && avr->cycle < limit &&
         g_uart1.lines < want_lines) {
    state = avr_run(avr);
  }
  double sim_ms = (double)avr->cycle * 1000.0 / avr->frequency;
  fprintf(stderr, "mega-sim: %lu lines on Serial1, %lu on USB, %lu pulses, %.0f ms simulated%s\n",
          g_uart1.lines, g_uart0.lines, g_pulses, sim_ms,
          state == cpu_Crashed ? ", CPU CRASHED" : "");
  return (g_uart1.lines >= want_lines && state != cpu_Crashed) ? 0 : 1;

usage:
  fprintf(stderr,
          "usage: mega-sim FIRMWARE.elf [--lines N] [--max-ms MS] [--soil-mv MV] "
          "[--volt-mv MV] [--pulse-hz HZ]\n");
  return 2;
}
