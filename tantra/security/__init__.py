"""Authentication and authorization: tokens, reader scopes, signed UDP, replay state, limits.

Owns the checks every transport calls when ``--auth FILE`` is on (and the
abuse limits that apply with or without it). Modules:

- ``tokens``: the token file (JSON, hashed secrets), kinds and names, lookups;
- ``scopes``: reader scopes (``DEVICE/SENSOR`` globs) and their intersection
  with subscription filters (pure);
- ``signing``: the UDP framing ``payload\\nHEX_HMAC_SHA256`` (pure);
- ``replay``: the per-device anti-replay rule for signed UDP, and its state file;
- ``watcher``: reloading the token file on change or SIGHUP, closing revoked
  tokens' connections;
- ``gate``: what the transports call (device checks, rate limits, connection limits).

Does not own: transports, the hub's validation, the WAMP router's messages.
"""
