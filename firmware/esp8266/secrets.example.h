// Settings of the ESP8266 sketch. Copy this file to secrets.h (git-ignored:
// it holds your Wi-Fi password) and edit it there:
//   cp secrets.example.h secrets.h
#ifndef TANTRA_ESP_SETTINGS_H
#define TANTRA_ESP_SETTINGS_H

// Wi-Fi network to join (2.4 GHz; the ESP8266 has no 5 GHz radio).
#define WIFI_SSID "my-network"
#define WIFI_PASSWORD "my-password"

// Where the Tantra hub listens for devices (`twistd -n tantra`: TCP and UDP 9000).
#define HUB_HOST "192.168.1.10"
#define HUB_PORT 9000

// 0 = raw TCP (persistent connection, every reading re-sent after a
// reconnect until acknowledged); 1 = UDP (one datagram per reading, re-sent
// until acknowledged, at most UDP_MAX_TRIES times).
#define HUB_USE_UDP 0
// UDP only: the local port replies come back to.
#define UDP_LOCAL_PORT 9001

// The hub's --auth: this device's token (`tantra token add --auth FILE
// --kind device --device DEVICE_NAME DEVICE_NAME` prints it once). Empty:
// the hub runs without --auth. With it, TCP sends {"auth": TOKEN} first on
// every connection; UDP signs every datagram with HMAC-SHA256 under it.
// Anyone who reads it can send as this device: keep this file private.
#define HUB_TOKEN ""

// This board's name on the dashboards: 1-64 chars of [A-Za-z0-9_-].
#define DEVICE_NAME "farm-1"

// Must match ESP_BAUD in ../mega/config.h.
#define SERIAL_BAUD 115200

// Readings kept until acknowledged (about 140 bytes each). When full, the
// oldest is dropped and counted.
#define QUEUE_SLOTS 64

// Reconnect backoff (TCP): first delay, longest delay; jittered.
#define TCP_BACKOFF_BASE_MS 500
#define TCP_BACKOFF_MAX_MS 30000
// Wait for an ack before re-sending (UDP): first, longest; and the tries.
#define UDP_RETRY_BASE_MS 500
#define UDP_RETRY_MAX_MS 5000
#define UDP_MAX_TRIES 10

// Print delivery counters on the serial port this often (0 = never).
#define STATS_EVERY_MS 60000

#endif
