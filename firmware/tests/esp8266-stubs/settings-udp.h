// The example settings with UDP selected, so `make esp-check` covers both
// transports of the sketch.
#include "secrets.example.h"
#undef HUB_USE_UDP
#define HUB_USE_UDP 1
