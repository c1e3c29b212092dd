# Reason identifiers of the compiled twin: one per reason of fastpath/codes.py
# that the byte-level stages report. fastpath/_verify_c.pyx maps each to its
# result code and reason text (REASONS table there); 0 means "no failure".

cdef enum Reason:
    OK = 0
    PREFIX_UNKNOWN
    QR_TOO_LONG
    BASE45_ALPHABET
    BASE45_LENGTH
    BASE45_VALUE
    ZLIB_HEADER
    ZLIB_DATA
    ZLIB_TRUNCATED
    ZLIB_TRAILING
    ZLIB_TOO_LARGE
    CBOR_TRUNCATED
    CBOR_TRAILING
    CBOR_INDEFINITE
    CBOR_DEPTH
    CBOR_DUPLICATE_KEY
    CBOR_NON_PREFERRED
    CBOR_INVALID
    CBOR_TAG
    COSE_STRUCTURE
    COSE_PROTECTED
    COSE_SIGNATURE_LENGTH
    HEADER_ALG_MISSING
    HEADER_ALG_UNSUPPORTED
    HEADER_CRIT
    HEADER_KID_MISSING
    HEADER_KID_INVALID
    KEY_UNKNOWN
    KEY_REVOKED
    KEY_ISSUER
    KEY_USE
    SIGNATURE_INVALID
    CLAIMS_NOT_MAP
    TIME_NOT_YET_VALID
    TIME_EXPIRED
    TIME_LIFETIME
    INPUT_TYPE
    CARD_CHALLENGE
    CARD_SIGNATURE_LENGTH
    CARD_SIGNATURE
    CARD_TOO_LONG
    # Not one reason but a group: a claim check failed, and its reasons (which
    # name the claim) are in the _Claims that the check returned.
    CLAIMS
    REASON_COUNT
