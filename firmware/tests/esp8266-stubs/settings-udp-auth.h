// UDP with a token: signed datagrams.
#include "settings-auth.h"
#undef HUB_USE_UDP
#define HUB_USE_UDP 1
