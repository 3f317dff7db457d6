"""The one place that decides what is secret-shaped: masking for everything the agent serves or reports.

Two entry points, both pure and cheap:

- `redact(value)` for structured data served by the read-only `/v0/tasks` API and written into NodeTask status
  (params, results, error text): values under secret-looking *keys* are replaced by `REDACTED` at any depth, and
  every string is passed through `redact_text`.
- `redact_text(text)` for text the agent writes itself but that may quote someone else's: URL userinfo
  (`https://user:pass@host`), presigned-URL signatures and credentials (`X-Amz-Signature=`, `Signature=`,
  `X-Amz-Credential=`, `X-Amz-Security-Token=`), `key = value` / `"key": value` assignments whose key looks secret
  (token, secret, password, credential, private key, mnemonic, api key...), PEM / PGP armored blocks, and runs of
  12 or more BIP-39-shaped words (a mnemonic).
- `scrub_output(text, limit)` for text produced by *another program or host* (a subprocess's stderr, a remote's
  answer) before it may reach a TaskError, progress, logs or the store: bounded to `limit` characters (the tail by
  default: the end of stderr is where the panic is), control characters removed, `redact_text` applied, and in
  addition every 64-hex string (a raw secp256k1/ed25519 seed looks exactly like that) and every base64 string of 64
  raw bytes (an ed25519 private key), or of 32 raw bytes when a key word precedes it, is masked. Hashes in foreign
  text are masked too: losing a block hash from a subprocess's error is a small price for never leaking a key.

Token-shaped values are masked whatever their key (F7): `Bearer <token>` and JSON Web Tokens (`eyJ...`) anywhere in
text, HMAC signatures written as `sha256=<hex>` / `hmac...: <hex>`, and in structures every string that is entirely
hex of 32 or more digits (an HMAC, a raw key) unless its key names a public digest or identifier (a word such as
`hash`, `sha256`, `checksum`, `digest`, `id`, `address`, `pub`: `txHash`, `nodeId`, `expectedSha256`), since those are
what results legitimately hold.

Key names are matched as whole words of the key (`priv_key`, `privKey`, `api-key`, `authToken`, `password`), so that
ordinary keys such as `s3Key`, `exportKey` or `keyName` stay visible: they name S3 objects, not secrets. The patterns
are defence in depth: handlers must not put secrets into results, errors or progress in the first place.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Key names (after splitting camelCase and separators into words) that hold secrets.
_SECRET_WORDS = frozenset(
    {
        "mnemonic",
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "token",
        "tokens",
        "credential",
        "credentials",
        "signature",
        "authorization",
        "cookie",
        "hmac",
        "bearer",
        "jwt",
    }
)
# Words of a key whose all-hex value is public (a digest, an ID, an address): kept by `redact`'s hex rule.
_PUBLIC_HEX_WORDS = frozenset(
    {
        "hash",
        "hashes",
        "sha",
        "sha1",
        "sha256",
        "sha512",
        "checksum",
        "checksums",
        "digest",
        "digests",
        "id",
        "ids",
        "address",
        "addresses",
        "pub",
        "pubkey",
        "etag",
        "root",
    }
)
# Two-word key names that are secrets although neither word alone is (`priv_key`, `privateKey`, `apiKey`...).
_SECRET_PAIRS = frozenset(
    {
        ("priv", "key"),
        ("private", "key"),
        ("privkey",),
        ("privatekey",),
        ("api", "key"),
        ("apikey",),
        ("access", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("session", "key"),
    }
)
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def _key_words(name: object) -> list[str]:
    return [word.lower() for word in _WORD_SPLIT.split(str(name)) if word]


def public_hex_key(name: object) -> bool:
    """Whether an all-hex value under this key is public (`txHash`, `nodeId`, `sha256`, `consensusPubKey`...)."""
    return any(word in _PUBLIC_HEX_WORDS for word in _key_words(name))


def secret_key(name: object) -> bool:
    """Whether a mapping key names a secret (`privKey`, `priv_validator_key`'s `priv_key`, `authToken`, `apiKey`,
    `password`, `X-Amz-Signature`...); `key`, `s3Key`, `exportKey` alone do not."""
    words = _key_words(name)
    if any(word in _SECRET_WORDS for word in words):
        return True
    if any((word,) in _SECRET_PAIRS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


# --- text patterns ---------------------------------------------------------------------------------------------------

# A key name (at a token boundary, at most 64 characters) that contains a secret-looking word.
_SECRET_NAME = (
    r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]{0,40}?"
    r"(?:priv(?:ate)?[_.-]?key|api[_.-]?key|access[_.-]?key|secret|signing[_.-]?key|mnemonic|passw(?:or)?d"
    r"|passphrase|token|credential|signature|authorization|cookie|hmac)[A-Za-z0-9_.-]{0,40}"
)
# `Authorization: Bearer abc...` / `bearer abc...`: the token after the scheme, whatever names it.
# A token has 8+ characters and a digit or symbol among them (so "Bearer authentication" is prose, not a token).
_BEARER = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9])bearer[ \t]+)(?!\[redacted)(?=[A-Za-z]*[0-9\-._~+/=])[A-Za-z0-9\-._~+/]{8,}=*",
    re.IGNORECASE,
)
# A JSON Web Token: base64url(JSON header) "." payload "." signature; every header starts `{"` = `eyJ`.
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*")
# An HMAC signature in the `sha256=<hex>` form of webhook headers.
_HEX_SIGNATURE = re.compile(r"(?P<name>(?<![A-Za-z0-9])sha(?:1|256|384|512)=)[0-9A-Fa-f]{40,}(?![0-9A-Fa-f])")
_ALL_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]{1,40})-----.*?(?:-----END \1-----|\Z)",
    re.DOTALL,
)
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,30}://)[^/\s@?#]{1,256}@")
# `X-Amz-Signature=...`, `Signature=...`, `?token=...`, `&password=...` in URLs and query strings.
_QUERY_SECRET = re.compile(r"(?P<name>" + _SECRET_NAME + r")=(?P<value>[^&\s\"'#]+)", re.IGNORECASE)
# `"priv_key": {...}` / `"password": "..."` / `token = "..."` / `secret: xyz` (JSON, TOML, YAML, logfmt).
_ASSIGNMENT = re.compile(
    r"(?P<name>[\"']?" + _SECRET_NAME + r"[\"']?[ \t]*(?::|=)[ \t]*)"
    r"(?!\[redacted)(?P<value>\{[^{}]*\}|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;}\]]+)",
    re.IGNORECASE,
)
_MNEMONIC = re.compile(r"(?<![A-Za-z])(?:[a-z]{3,8}[ \t]+){11,}[a-z]{3,8}(?![A-Za-z])")
_HEX64 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])")
_BASE64 = re.compile(
    r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{42,44}={0,2}(?![A-Za-z0-9+/=])|"
    r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{85,88}={0,2}(?![A-Za-z0-9+/=])"
)
_KEY_WORD = re.compile(r"priv|secret|seed|key|mnemonic", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _raw_length(candidate: str) -> int | None:
    try:
        return len(base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def _mask_base64(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        raw = _raw_length(match.group(0))
        if raw == 64:
            return REDACTED
        if raw == 32 and _KEY_WORD.search(text, max(0, match.start() - 80), match.start()):
            return REDACTED
        return match.group(0)

    return _BASE64.sub(replace, text)


def redact_text(text: str) -> str:
    """`text` with secret-shaped parts replaced by `REDACTED` (see the module docstring)."""
    if not text:
        return text
    text = _PEM.sub(lambda match: f"[redacted {match.group(1).lower()}]", text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda match: f"{match.group('scheme')}{REDACTED}", text)
    text = _URL_USERINFO.sub(lambda match: f"{match.group('scheme')}{REDACTED}@", text)
    text = _QUERY_SECRET.sub(lambda match: f"{match.group('name')}={REDACTED}", text)
    text = _ASSIGNMENT.sub(lambda match: f"{match.group('name')}{REDACTED}", text)
    text = _HEX_SIGNATURE.sub(lambda match: f"{match.group('name')}{REDACTED}", text)
    return _MNEMONIC.sub(REDACTED, text)


def scrub_output(text: str | bytes, limit: int = 2048, *, keep: str = "tail") -> str:
    """Foreign text (subprocess output, a remote's answer) made safe to report: at most `limit` characters (`keep`
    "tail" or "head"), control characters dropped, secrets and key-shaped strings masked."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # Bound first (cheap on huge input), with slack so a secret cut at the edge is still recognised, then mask,
    # then bound again: masking only shortens the text.
    window = 2 * limit + 256
    text = text[-window:] if keep == "tail" else text[:window]
    text = _CONTROL.sub("", text)
    text = redact_text(text)
    text = _HEX64.sub(REDACTED, text)
    text = _mask_base64(text)
    text = text.strip()
    if len(text) > limit:
        text = "…" + text[-(limit - 1) :] if keep == "tail" else text[: limit - 1] + "…"
    return text


def redact(value: Any) -> Any:
    """`value` with every entry under a secret-looking key masked and every string passed through `redact_text`,
    at any depth. Containers nested deeper than `max_depth` are replaced by a marker (they cannot come from a valid
    task, see `agent.models.limits`)."""
    return _redact(value, 0, public_hex=True)


_MAX_REDACT_DEPTH = 64


def _redact(value: Any, depth: int, *, public_hex: bool) -> Any:
    """`public_hex`: whether the nearest key names a public digest or ID (see the module docstring)."""
    if isinstance(value, str):
        if not public_hex and _ALL_HEX.fullmatch(value):
            return REDACTED
        return redact_text(value)
    if isinstance(value, Mapping | list | tuple) and depth >= _MAX_REDACT_DEPTH:
        return f"[omitted: nested deeper than {_MAX_REDACT_DEPTH} levels]"
    if isinstance(value, Mapping):
        return {
            key: REDACTED if secret_key(key) else _redact(item, depth + 1, public_hex=public_hex_key(key))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, depth + 1, public_hex=public_hex) for item in value]
    return value
