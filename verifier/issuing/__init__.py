"""The issuing side: issuer keys and trust lists, minting of WP1/ES1 codes and card
certificates, and software cards that answer challenges.

Used by the CLI, the upstream simulator, the demo, the tests and the load tests;
never by the request path of the API (DESIGN: "Which part may use which").
"""

from verifier.issuing.card import SoftwareCard
from verifier.issuing.keys import (
    IssuerKey,
    KeyFileError,
    KeyRing,
    load_key,
    save_key,
    trust_list,
    write_trust_list,
)
from verifier.issuing.mint import (
    OMIT,
    MintError,
    base45_encode,
    encode_qr,
    mint_card_certificate,
    mint_es1,
    mint_wp1,
    sign_cose,
)

__all__ = [
    "OMIT",
    "IssuerKey",
    "KeyFileError",
    "KeyRing",
    "MintError",
    "SoftwareCard",
    "base45_encode",
    "encode_qr",
    "load_key",
    "mint_card_certificate",
    "mint_es1",
    "mint_wp1",
    "save_key",
    "sign_cose",
    "trust_list",
    "write_trust_list",
]
