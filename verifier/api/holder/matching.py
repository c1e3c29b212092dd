"""The real-name match of e-card registration: a name, a date of birth and an identifier
against the permit index, answered "match" or "no_match" with reason codes only.

Names are compared after this normalisation (documented in the OpenAPI schema and the
README), applied to both the name given and the index's:

1. letters that Unicode does not decompose are spelled out: ß -> ss, æ -> ae, œ -> oe,
   ø -> o, ł -> l, đ/ð -> d, þ -> th, dotless ı -> i;
2. compatibility decomposition (NFKD) and every combining mark dropped: diacritics go,
   so Müller = MULLER, José = JOSE, Nguyễn = NGUYEN (ICAO 9303's "UE" spelling of ü is
   another name: MUELLER does not match MULLER);
3. case folded;
4. apostrophes dropped (O'Brien = OBRIEN); every other character that is not a letter
   or digit separates name parts (spaces, commas, hyphens, dots, the passport's ``<``):
   "DOE, Jane-Ann" = "jane ann doe";
5. the parts compared as a multiset, in any order: the order of given and family names
   does not matter (SMITH JOHN = John Smith), but every part must be there once.

Identifiers (permit number, social security number) are compared with spaces and
hyphens removed and letters in upper case; dates of birth exactly (YYYY-MM-DD).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["R_DOB", "R_IDENTIFIER", "R_NAME", "match_reasons", "name_parts", "normalise_identifier"]

R_IDENTIFIER = "match.identifier_unknown"
R_NAME = "match.name_differs"
R_DOB = "match.dob_differs"

_SPELLED_OUT = str.maketrans({
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ı": "i",
})
_APOSTROPHES = re.compile(r"['’‘`´]")
_SEPARATORS = re.compile(r"[\W_]+")
_IDENTIFIER_NOISE = re.compile(r"[\s-]+")


def name_parts(name: str) -> tuple[str, ...]:
    """The name's parts after the normalisation above, sorted."""
    text = unicodedata.normalize("NFKD", name.translate(_SPELLED_OUT))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _APOSTROPHES.sub("", text)
    return tuple(sorted(part for part in _SEPARATORS.split(text) if part))


def normalise_identifier(identifier: str) -> str:
    return _IDENTIFIER_NOISE.sub("", identifier).upper()


def match_reasons(name: str, dob: str, record_name: str | None, record_dob: str | None) -> list[str]:
    """Empty for a match; else the reason codes. ``record_name`` None: the identifier is unknown."""
    if record_name is None or record_dob is None:
        return [R_IDENTIFIER]
    reasons = []
    given = name_parts(name)
    if not given or given != name_parts(record_name):
        reasons.append(R_NAME)
    if dob != record_dob:
        reasons.append(R_DOB)
    return reasons
