"""Result codes (WIRE-FORMAT 7) and the machine-readable reasons behind them.

Both twins use these constants, so that they give the same verdict, reasons
included, on the same input. A reason is ``area.detail``; claim reasons are
built by :func:`claim_reason`.
"""

from typing import Final

# WIRE-FORMAT 7, in the order the checks run.
VALID: Final = "VALID"
MALFORMED: Final = "MALFORMED"
UNSUPPORTED: Final = "UNSUPPORTED"
UNKNOWN_KEY: Final = "UNKNOWN_KEY"
KEY_REVOKED: Final = "KEY_REVOKED"
BAD_SIGNATURE: Final = "BAD_SIGNATURE"
NOT_YET_VALID: Final = "NOT_YET_VALID"
EXPIRED: Final = "EXPIRED"
PERMIT_NOT_FOUND: Final = "PERMIT_NOT_FOUND"
PERMIT_CANCELLED: Final = "PERMIT_CANCELLED"
PERMIT_EXPIRED: Final = "PERMIT_EXPIRED"
SUPERSEDED: Final = "SUPERSEDED"
CARD_INVALID: Final = "CARD_INVALID"
REPLAYED: Final = "REPLAYED"
CHALLENGE_INVALID: Final = "CHALLENGE_INVALID"
STATUS_UNAVAILABLE: Final = "STATUS_UNAVAILABLE"

ALL_RESULTS: Final = (
    VALID, MALFORMED, UNSUPPORTED, UNKNOWN_KEY, KEY_REVOKED, BAD_SIGNATURE,
    NOT_YET_VALID, EXPIRED, PERMIT_NOT_FOUND, PERMIT_CANCELLED, PERMIT_EXPIRED,
    SUPERSEDED, CARD_INVALID, REPLAYED, CHALLENGE_INVALID, STATUS_UNAVAILABLE,
)

# Profiles (WIRE-FORMAT 1 and 6).
PROFILE_WP1: Final = "WP1"
PROFILE_ES1: Final = "ES1"
PROFILE_CARD: Final = "CARD"

# --- reasons -----------------------------------------------------------------
# input
R_INPUT_TYPE: Final = "input.type"                # not a str (QR) / not bytes (card)
# WIRE-FORMAT 1: prefix, base45, zlib
R_PREFIX_UNKNOWN: Final = "prefix.unknown"
R_QR_TOO_LONG: Final = "qr.too_long"              # more base45 text than a 4096-byte message can need
R_BASE45_ALPHABET: Final = "base45.alphabet"
R_BASE45_LENGTH: Final = "base45.length"          # length % 3 == 1
R_BASE45_VALUE: Final = "base45.value"            # a triple above 65535 or a pair above 255
R_ZLIB_HEADER: Final = "zlib.header"              # bad CMF/FLG, preset dictionary
R_ZLIB_DATA: Final = "zlib.data"                  # invalid deflate data or bad Adler-32
R_ZLIB_TRUNCATED: Final = "zlib.truncated"
R_ZLIB_TRAILING: Final = "zlib.trailing"          # bytes after the end of the stream
R_ZLIB_TOO_LARGE: Final = "zlib.too_large"        # would inflate past its bound (a QR's message: 4096 bytes)
# CBOR well-formedness (any level)
R_CBOR_TRUNCATED: Final = "cbor.truncated"        # a length or item runs past the end
R_CBOR_TRAILING: Final = "cbor.trailing"          # bytes after the top-level item
R_CBOR_INDEFINITE: Final = "cbor.indefinite"
R_CBOR_DEPTH: Final = "cbor.depth"                # nesting deeper than 8
R_CBOR_DUPLICATE_KEY: Final = "cbor.duplicate_key"
R_CBOR_NON_PREFERRED: Final = "cbor.non_preferred"  # an argument not in its shortest form
R_CBOR_INVALID: Final = "cbor.invalid"            # reserved info, bad simple value, bad UTF-8, key type
R_CBOR_TAG: Final = "cbor.tag"                    # a tag other than a single outer 18
# WIRE-FORMAT 2: COSE_Sign1 structure
R_COSE_STRUCTURE: Final = "cose.structure"        # not a 4-element array of the right types
R_COSE_PROTECTED: Final = "cose.protected"        # protected bstr does not hold exactly one map
R_COSE_SIGNATURE_LENGTH: Final = "cose.signature_length"
# WIRE-FORMAT 2: header
R_HEADER_ALG_MISSING: Final = "header.alg_missing"
R_HEADER_ALG_UNSUPPORTED: Final = "header.alg_unsupported"
R_HEADER_CRIT: Final = "header.crit"
R_HEADER_KID_MISSING: Final = "header.kid_missing"
R_HEADER_KID_INVALID: Final = "header.kid_invalid"  # not a bstr of 8 bytes
# keys and signature
R_KEY_UNKNOWN: Final = "key.unknown"
R_KEY_REVOKED: Final = "key.revoked"
R_KEY_ISSUER: Final = "key.issuer_not_allowed"
R_KEY_USE: Final = "key.use"                      # a trusted key, but for the other use (sig / status)
R_SIGNATURE_INVALID: Final = "signature.invalid"
# WIRE-FORMAT 3: claims, times
R_CLAIMS_NOT_MAP: Final = "claims.not_map"
R_TIME_NOT_YET_VALID: Final = "time.not_yet_valid"
R_TIME_EXPIRED: Final = "time.expired"
R_TIME_LIFETIME: Final = "time.lifetime"          # ES1 exp - iat > 300, or exp <= iat
# WIRE-FORMAT 6: card reads
R_CARD_CHALLENGE: Final = "card.challenge"        # not 32 bytes
R_CARD_SIGNATURE_LENGTH: Final = "card.signature_length"
R_CARD_SIGNATURE: Final = "card.signature_invalid"
R_CARD_TOO_LONG: Final = "card.too_long"          # a card certificate above 4096 bytes (as the QR's message)
# WIRE-FORMAT 8: the status claim (65535) is checked with claim_reason: claims.type.status,
# status.type.key, status.missing.status_list, status.type.status_list, status.missing.idx,
# status.type.idx, status.missing.uri, status.type.uri.
# WIRE-FORMAT 8: Status List Tokens (fastpath.status_list; their claims too use claim_reason:
# claims.missing.sub, claims.type.ttl, status_list.type.bits, status_list.missing.lst, ...)
R_HEADER_TYP: Final = "header.typ"                # protected 16 missing or not application/statuslist+cwt
R_STATUS_LIST_TOO_LONG: Final = "status_list.too_long"  # a token longer than any list within the bound
R_STATUS_LIST_URI: Final = "status_list.uri"      # a token's status claim points to another list
R_STATUS_LIST_INDEX: Final = "status_list.index"  # ... or past the end of this one


def claim_reason(area: str, kind: str, name: str) -> str:
    """``claims.missing.exp``, ``claims.type.cti``, ``permit.missing.pn``, ``permit.type.dob``, ``card.type.cpk``.

    kind is ``missing`` or ``type`` (wrong type or value); the area is ``claims``
    for the CWT claims, ``permit`` for the -70001 map, ``card`` for -70002,
    ``status`` for the status claim (65535), ``status_list`` for a Status List
    Token's list (65533).
    """
    return f"{area}.{kind}.{name}"
