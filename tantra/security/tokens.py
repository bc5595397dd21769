"""Tokens: who may connect, as what, seeing what; and the JSON file that lists them.

Owns: the :class:`Token` record (name, kind, device or scopes, the SHA-256
of the secret), the file format, making new secrets, and looking a presented
secret up (:class:`TokenTable`).

- A secret is ``tantra_`` + 64 URL-safe random characters (384 bits), so a
  plain SHA-256 is the right hash (no password stretching: nothing to guess).
  Secrets are longer than SHA-256's 64-byte block on purpose: HMAC hashes such
  a key first (RFC 2104), so ``HMAC(token, m) == HMAC(sha256(token), m)`` and
  the hub checks UDP signatures with the stored hash alone, never the token.
  (The stored hash of a *device* token is therefore as good as the token for
  UDP signatures: keep the file private, mode 0600, as ``tantra token`` writes it.)
- Every comparison of a secret (or its hash) is ``hmac.compare_digest``.
- Names are 1-64 characters of ``[A-Za-z0-9_-]``: no character that is a
  wildcard or separator in MQTT (``+ # /``), WAMP (``.``), or a glob (``* ? [``),
  so a name can never widen a topic pattern or an ACL (Mosquitto's pattern-ACL
  advisory: a client id of ``#`` matched every topic).

Does not own: reading the file on change (``tantra.security.watcher``),
scope matching (``tantra.security.scopes``), the command line (``tantra.cli.token``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from tantra.model import NAME_PATTERN, NAME_RULE
from tantra.security.scopes import Scope, ScopeError, parse_scope

KINDS = ("device", "reader", "admin")
FORMAT_VERSION = 1
TOKEN_PREFIX = "tantra_"


class TokenFileError(ValueError):
    """The token file cannot be used; the message says which entry and why."""


def check_name(name: Any, what: str = "name") -> str:
    """A token or device name: the reading name charset, so never a topic wildcard."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise TokenFileError(f"{what} {name!r} must be {NAME_RULE} (no wildcard characters)")
    return name


def hash_secret(secret: str | bytes) -> str:
    """The stored form of a secret: lowercase hex SHA-256."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8", "surrogatepass")
    return hashlib.sha256(secret).hexdigest()


def new_secret() -> str:
    """A fresh token: 71 characters, longer than the HMAC block (see the module docstring)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(48)


@attrs.frozen
class Token:
    """One entry of the token file (never the secret itself)."""

    name: str
    kind: str
    hash: str
    device: str | None = None
    scopes: tuple[str, ...] = ()
    created: int = 0
    scope: Scope = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_name(self.name)
        if self.kind not in KINDS:
            raise TokenFileError(f"token {self.name}: kind must be one of {', '.join(KINDS)}")
        if not (isinstance(self.hash, str) and len(self.hash) == 64):
            raise TokenFileError(f"token {self.name}: hash must be 64 hex digits")
        try:
            bytes.fromhex(self.hash)
        except ValueError:
            raise TokenFileError(f"token {self.name}: hash must be 64 hex digits") from None
        if self.kind == "device":
            check_name(self.device, f"token {self.name}: device")
            if self.scopes:
                raise TokenFileError(f"token {self.name}: a device token has no scopes")
            scope = Scope.of_device(self.device)  # type: ignore[arg-type]
        else:
            if self.device is not None:
                raise TokenFileError(f"token {self.name}: only device tokens name a device")
            if self.kind == "admin":
                scope = Scope.all()
            else:
                if not self.scopes:
                    raise TokenFileError(f"token {self.name}: a reader token needs a scope")
                try:
                    scope = Scope([parse_scope(text) for text in self.scopes])
                except ScopeError as error:
                    raise TokenFileError(f"token {self.name}: {error}") from None
        object.__setattr__(self, "scope", scope)

    @property
    def key(self) -> bytes:
        """The HMAC key the hub uses for this token's UDP signatures (see the docstring)."""
        return bytes.fromhex(self.hash)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "sha256": self.hash}
        if self.device is not None:
            out["device"] = self.device
        if self.scopes:
            out["scopes"] = list(self.scopes)
        out["created"] = self.created
        return out

    def describe(self) -> dict[str, Any]:
        """What ``tantra token list`` shows: everything but the hash."""
        out = self.to_json()
        del out["sha256"]
        return out

    @classmethod
    def from_json(cls, data: Any) -> Token:
        if not isinstance(data, dict):
            raise TokenFileError("each token must be a JSON object")
        unknown = set(data) - {"name", "kind", "sha256", "device", "scopes", "created"}
        if unknown:
            raise TokenFileError(f"token {data.get('name')!r}: unknown field(s) {sorted(unknown)}")
        scopes = data.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise TokenFileError(f"token {data.get('name')!r}: scopes must be a list of strings")
        created = data.get("created", 0)
        if type(created) is not int:
            raise TokenFileError(f"token {data.get('name')!r}: created must be an integer")
        return cls(
            name=data.get("name"),  # type: ignore[arg-type]  # checked in post-init
            kind=data.get("kind"),  # type: ignore[arg-type]
            hash=data.get("sha256"),  # type: ignore[arg-type]
            device=data.get("device"),
            scopes=tuple(scopes),
            created=created,
        )


class TokenTable:
    """The tokens in force, looked up by presented secret or by device."""

    def __init__(self, tokens: Iterable[Token] = ()):
        self.by_name: dict[str, Token] = {}
        self._by_hash: dict[str, Token] = {}
        self._by_device: dict[str, list[Token]] = {}
        for token in tokens:
            if token.name in self.by_name:
                raise TokenFileError(f"token name {token.name!r} is used twice")
            self.by_name[token.name] = token
            self._by_hash[token.hash] = token
            if token.device is not None:
                self._by_device.setdefault(token.device, []).append(token)

    def __len__(self) -> int:
        return len(self.by_name)

    def find(self, secret: str | bytes | None) -> Token | None:
        """The token whose secret this is, or None.

        The dict look-up is keyed by the SHA-256 of the presented secret, so
        its timing depends on that hash, which says nothing usable about any
        stored secret; the match is then confirmed with ``compare_digest``.
        """
        if not secret or len(secret) > 512:
            return None
        presented = hash_secret(secret)
        token = self._by_hash.get(presented)
        if token is None or not hmac.compare_digest(token.hash, presented):
            return None
        return token

    def for_device(self, device: str) -> list[Token]:
        """Every device token of ``device`` (several while a key is rotated)."""
        return self._by_device.get(device, [])


def read_tokens(path: str) -> TokenTable:
    """The token table of a file; a missing file is an empty table."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return TokenTable()
    except OSError as error:
        raise TokenFileError(f"cannot read token file {path}: {error.strerror}") from None
    return parse_tokens(raw, path)


def parse_tokens(raw: bytes, where: str = "token file") -> TokenTable:
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise TokenFileError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), list):
        raise TokenFileError(f'{where} must be {{"version": 1, "tokens": [...]}}')
    if data.get("version") != FORMAT_VERSION:
        raise TokenFileError(f"{where}: unsupported version {data.get('version')!r}")
    try:
        return TokenTable(Token.from_json(entry) for entry in data["tokens"])
    except TokenFileError as error:
        raise TokenFileError(f"{where}: {error}") from None


def write_tokens(path: str, table: TokenTable) -> None:
    """Replace the file atomically (a reader never sees half a file), mode 0600."""
    body = {"version": FORMAT_VERSION, "tokens": [t.to_json() for t in table.by_name.values()]}
    write_atomically(path, json.dumps(body, indent=2).encode() + b"\n")


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename over it (0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".tantra-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
