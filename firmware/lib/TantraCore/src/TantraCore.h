// Everything the Tantra device core offers; sketches include only this.
// See firmware/README.md for what each piece is for.
#ifndef TANTRA_CORE_H
#define TANTRA_CORE_H

#include "tantra_backoff.h"
#include "tantra_clock.h"
#include "tantra_forwarder.h"
#include "tantra_json_reader.h"
#include "tantra_json_writer.h"
#include "tantra_limits.h"
#include "tantra_line.h"
#include "tantra_link.h"
#include "tantra_log.h"
#include "tantra_outbox.h"
#include "tantra_reading.h"
#include "tantra_reply.h"
#include "tantra_ring.h"
#include "tantra_rng.h"
#include "tantra_sensors.h"
#include "tantra_seq.h"
#include "tantra_sha256.h"
#include "tantra_stats.h"

#endif
