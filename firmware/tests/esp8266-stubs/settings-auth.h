// The example settings with a token, so `make esp-check` covers the auth
// paths of the sketch (TCP auth line; UDP signing in settings-udp-auth.h).
#include "secrets.example.h"
#undef HUB_TOKEN
#define HUB_TOKEN "tantra_example"
