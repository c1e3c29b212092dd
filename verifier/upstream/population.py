"""Synthetic permits, deterministic for a seed, generated lazily.

Permit ``i`` (0 <= i < count) is a pure function of ``(seed, as_of, i)``: its fields
are drawn from one keyed BLAKE2b digest of ``i``. Nothing is generated at start, so
a population of 1,000,000 (or 10,000,000) permits "exists" at once and costs no
memory; the simulator stores only the permits that lifecycle events changed.

Identifiers embed the index so that look-ups by identifier are O(1) and unique:

- permit number ``WP`` + region (6) + first-issue year (4) + serial ``i + 1`` (6 or
  more digits), e.g. ``WP1100002019000042``;
- social security number ``9`` + region (6) + birth year (4) + ``i`` (8 digits);
- card number ``S`` + region (6) + ``4 i + k`` (8 digits) for the k-th card of the
  seeded history; cards issued later by events take numbers from 90,000,000 up.

Status List entries (WIRE-FORMAT 8), assigned "at issuance" and never reused: permit
``i`` has ``si = i``; the k-th seeded card of permit ``i`` has entry
``SEEDED_CARD_SLOTS * i + k``, and the n-th card issued by an event
``SEEDED_CARD_SLOTS * count + n`` (:meth:`Population.card_index`, from the card
number alone).

Realistic variety: 16 provinces weighted like the real foreign workforce, categories
A/B/C, ~70 nationalities with names in Latin letters, employers with unified social
credit codes that pass the GB 32100 check digit, validity periods of 1–5 years (a
share already over), a share of cancelled permits, cards lost and replaced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final

from verifier.index.records import Card, PermitRecord

# Province codes (GB/T 2260) and a weight per 1000: where foreigners work.
_REGIONS: Final = (
    ("110000", 170), ("310000", 230), ("440000", 180), ("320000", 90), ("330000", 70),
    ("120000", 30), ("370000", 40), ("510000", 30), ("420000", 25), ("350000", 25),
    ("500000", 15), ("210000", 20), ("610000", 15), ("430000", 12), ("460000", 13),
    ("530000", 15),
)
# Cities (first 4 digits of the administrative division) used in credit codes.
_CITY_SUFFIXES: Final = ("0101", "0102", "0105", "0106", "0108", "0112", "0115", "0200", "0300", "0500")

# Given names and surnames by naming tradition, in passport Latin letters.
_NAMES: Final = {
    "en": (
        ("SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "MILLER", "DAVIS", "WILSON",
         "TAYLOR", "CLARK", "WALKER", "YOUNG", "HALL", "ALLEN", "WRIGHT", "SCOTT"),
        ("JAMES", "MARY", "ROBERT", "PATRICIA", "MICHAEL", "JENNIFER", "DAVID", "LINDA",
         "SARAH", "THOMAS", "EMILY", "DANIEL", "LAURA", "MATTHEW", "RACHEL", "ANDREW"),
    ),
    "de": (
        ("MUELLER", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER",
         "SCHULZ", "HOFFMANN", "KOCH", "RICHTER", "KLEIN", "WOLF", "HUBER", "GRUBER"),
        ("ANNA", "LUKAS", "LEA", "FELIX", "HANNAH", "JONAS", "SOPHIE", "MAXIMILIAN",
         "KATHARINA", "TOBIAS", "JULIA", "STEFAN", "LENA", "FLORIAN", "MARIE", "SEBASTIAN"),
    ),
    "fr": (
        ("MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "PETIT", "DURAND", "LEROY",
         "MOREAU", "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID", "BERTRAND"),
        ("CAMILLE", "LOUIS", "CHLOE", "HUGO", "MANON", "JULES", "INES", "ARTHUR",
         "CLAIRE", "NICOLAS", "ELODIE", "THEO", "MATHILDE", "ANTOINE", "AMELIE", "PIERRE"),
    ),
    "es": (
        ("GARCIA", "RODRIGUEZ", "MARTINEZ", "LOPEZ", "GONZALEZ", "PEREZ", "SANCHEZ", "RAMIREZ",
         "TORRES", "FLORES", "RIVERA", "GOMEZ", "DIAZ", "MORALES", "ORTIZ", "CASTRO"),
        ("SOFIA", "MATEO", "VALENTINA", "SANTIAGO", "ISABELLA", "DIEGO", "CAMILA", "ALEJANDRO",
         "LUCIA", "JAVIER", "MARIA", "CARLOS", "PAULA", "MIGUEL", "ELENA", "ANDRES"),
    ),
    "it": (
        ("ROSSI", "RUSSO", "FERRARI", "ESPOSITO", "BIANCHI", "ROMANO", "COLOMBO", "RICCI",
         "MARINO", "GRECO", "BRUNO", "GALLO", "CONTI", "DE LUCA", "COSTA", "GIORDANO"),
        ("GIULIA", "FRANCESCO", "CHIARA", "ALESSANDRO", "MARTINA", "LORENZO", "ALICE", "MATTEO",
         "FEDERICA", "ANDREA", "SARA", "MARCO", "ELISA", "LUCA", "GIORGIA", "PAOLO"),
    ),
    "ru": (
        ("IVANOV", "SMIRNOVA", "KUZNETSOV", "POPOVA", "VASILIEV", "PETROVA", "SOKOLOV", "MIKHAILOVA",
         "NOVIKOV", "FEDOROVA", "MOROZOV", "VOLKOVA", "ALEKSEEV", "LEBEDEVA", "KOZLOV", "EGOROVA"),
        ("ALEKSANDR", "ANASTASIA", "DMITRY", "EKATERINA", "SERGEY", "OLGA", "ANDREY", "TATIANA",
         "MAKSIM", "NATALIA", "IVAN", "IRINA", "PAVEL", "YULIA", "NIKOLAI", "SVETLANA"),
    ),
    "ko": (
        ("KIM", "LEE", "PARK", "CHOI", "JUNG", "KANG", "CHO", "YOON",
         "JANG", "LIM", "HAN", "OH", "SEO", "SHIN", "KWON", "HWANG"),
        ("MINJUN", "SEOYEON", "JIHOON", "HAYOON", "DOYUN", "JIWOO", "SEOJUN", "SUAH",
         "HYUNWOO", "YUNA", "JAEWON", "EUNJI", "SUNGMIN", "MINJI", "TAEYANG", "SORA"),
    ),
    "ja": (
        ("SATO", "SUZUKI", "TAKAHASHI", "TANAKA", "WATANABE", "ITO", "YAMAMOTO", "NAKAMURA",
         "KOBAYASHI", "KATO", "YOSHIDA", "YAMADA", "SASAKI", "YAMAGUCHI", "MATSUMOTO", "INOUE"),
        ("HARUTO", "YUI", "SOTA", "AOI", "YUTO", "HINA", "RIKU", "SAKURA",
         "KENTA", "YUKI", "TAKUMI", "MISAKI", "DAIKI", "NANAMI", "SHOTA", "AYAKA"),
    ),
    "in": (
        ("SHARMA", "PATEL", "SINGH", "KUMAR", "GUPTA", "REDDY", "IYER", "NAIR",
         "KHAN", "AHMED", "RAO", "JOSHI", "MEHTA", "DAS", "CHOWDHURY", "PERERA"),
        ("AARAV", "PRIYA", "ARJUN", "ANANYA", "ROHAN", "DIVYA", "VIKRAM", "SNEHA",
         "RAHUL", "KAVYA", "ADITYA", "POOJA", "SANJAY", "NEHA", "IMRAN", "FATIMA"),
    ),
    "sea": (
        ("NGUYEN", "TRAN", "LE", "PHAM", "SANTOS", "REYES", "CRUZ", "BAUTISTA",
         "TAN", "LIM", "WONG", "SUKSAWAT", "CHAIYAPORN", "WIJAYA", "SANTOSO", "RAHMAN"),
        ("MINH", "LINH", "ANH", "THAO", "JOSE", "MARIA", "MARK", "ANGELICA",
         "WEI MING", "SITI", "ARIF", "NURUL", "SOMCHAI", "SUDA", "BUDI", "DEWI"),
    ),
    "ar": (
        ("HASSAN", "ALI", "IBRAHIM", "MAHMOUD", "MOHAMED", "ABDULLAH", "SALEH", "YOUSSEF",
         "HAMDAN", "NASSER", "KHALIL", "OMAR", "FARAH", "HADDAD", "MANSOUR", "AZIZ"),
        ("AHMED", "FATIMA", "OMAR", "AISHA", "YUSUF", "MARYAM", "KHALED", "LAYLA",
         "HAMZA", "NOUR", "TARIQ", "SALMA", "KARIM", "HANA", "SAMI", "RANIA"),
    ),
    "af": (
        ("OKAFOR", "MENSAH", "OMONDI", "BANDA", "DLAMINI", "MWANGI", "ADEYEMI", "OWUSU",
         "KAMAU", "NDLOVU", "DIALLO", "TRAORE", "KOFFI", "ABEBE", "OKONKWO", "BOATENG"),
        ("CHINEDU", "AMARA", "KWAME", "ABENA", "TENDAI", "ZANELE", "SEKOU", "AMINATA",
         "OLUWASEUN", "NGOZI", "KOFI", "ESI", "JABARI", "IMANI", "YAW", "ADAEZE"),
    ),
    "nl": (
        ("DE JONG", "JANSEN", "DE VRIES", "VAN DEN BERG", "BAKKER", "VISSER", "SMIT", "ANDERSSON",
         "JOHANSSON", "HANSEN", "NIELSEN", "NOWAK", "KOWALSKI", "NOVAK", "VIRTANEN", "PETERS"),
        ("DAAN", "EMMA", "SEM", "TESS", "LARS", "INGRID", "ERIK", "FREJA",
         "MAGNUS", "ASTRID", "PIOTR", "ZOFIA", "JAKUB", "EVA", "MIKKO", "SANNE"),
    ),
    "pt": (
        ("SILVA", "SANTOS", "OLIVEIRA", "SOUZA", "PEREIRA", "COSTA", "FERREIRA", "ALVES",
         "RODRIGUES", "LIMA", "GOMES", "RIBEIRO", "CARVALHO", "ALMEIDA", "MARTINS", "ROCHA"),
        ("JOAO", "ANA", "PEDRO", "BEATRIZ", "LUCAS", "MARIANA", "GABRIEL", "LARISSA",
         "RAFAEL", "JULIANA", "TIAGO", "CAROLINA", "BRUNO", "FERNANDA", "RICARDO", "INES"),
    ),
}

# Nationality (ISO 3166-1 alpha-3), naming tradition, weight per 1000.
_NATIONALITIES: Final = (
    ("KOR", "ko", 90), ("USA", "en", 85), ("JPN", "ja", 80), ("DEU", "de", 45), ("GBR", "en", 40),
    ("FRA", "fr", 35), ("CAN", "en", 30), ("AUS", "en", 25), ("RUS", "ru", 30), ("IND", "in", 30),
    ("SGP", "sea", 20), ("MYS", "sea", 18), ("THA", "sea", 12), ("VNM", "sea", 15), ("PHL", "sea", 18),
    ("IDN", "sea", 12), ("ITA", "it", 20), ("ESP", "es", 15), ("NLD", "nl", 10), ("SWE", "nl", 6),
    ("DNK", "nl", 4), ("NOR", "nl", 3), ("FIN", "nl", 3), ("POL", "nl", 5), ("CZE", "nl", 3),
    ("BEL", "fr", 5), ("CHE", "de", 6), ("AUT", "de", 4), ("IRL", "en", 4), ("NZL", "en", 6),
    ("ZAF", "en", 6), ("BRA", "pt", 10), ("PRT", "pt", 4), ("MEX", "es", 8), ("ARG", "es", 4),
    ("COL", "es", 3), ("CHL", "es", 3), ("PER", "es", 2), ("UKR", "ru", 8), ("BLR", "ru", 3),
    ("KAZ", "ru", 6), ("UZB", "ru", 4), ("MNG", "ru", 5), ("PAK", "in", 12), ("BGD", "in", 5),
    ("LKA", "in", 3), ("NPL", "in", 3), ("EGY", "ar", 6), ("ARE", "ar", 3), ("SAU", "ar", 3),
    ("MAR", "ar", 3), ("TUR", "ar", 5), ("IRN", "ar", 4), ("JOR", "ar", 2), ("NGA", "af", 8),
    ("KEN", "af", 4), ("GHA", "af", 4), ("ETH", "af", 3), ("TZA", "af", 2), ("ZWE", "af", 2),
    ("SEN", "af", 2), ("CMR", "af", 2), ("ISR", "en", 3), ("GRC", "it", 2), ("HUN", "nl", 2),
    ("ROU", "it", 2), ("LAO", "sea", 3), ("KHM", "sea", 3), ("MMR", "sea", 3),
)

# Category weights per 100: A (high-end talent), B (professionals), C (others).
_CATEGORIES: Final = (("A", 22), ("B", 63), ("C", 15))
# Length of a validity period in years, weight per 100.
_DURATIONS: Final = ((1, 20), (2, 35), (3, 30), (5, 15))

# GB 32100-2015: the 31 characters of a unified social credit code and its weights.
CREDIT_CODE_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714-1997: the organisation code's check digit weights.
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)

CHUNK_RECORDS: Final = 1024
"""Permits per snapshot chunk (and per unit of the simulator's snapshot cache)."""

EVENT_CARD_BASE: Final = 90_000_000
"""Card numbers from here up are issued by lifecycle events, not the seeded history."""

SEEDED_CARD_SLOTS: Final = 3
"""Status List entries of ``cards`` set aside per seeded permit: its history has up to 3 cards."""

_DAY: Final = 1


def _table(items: tuple[tuple, ...], size: int) -> tuple:
    """Expand (value..., weight) rows into a lookup table of ``size`` entries, in proportion."""
    total = sum(row[-1] for row in items)
    table: list = []
    cumulative = 0
    for row in items:
        cumulative += row[-1]
        value = row[:-1] if len(row) > 2 else row[0]
        table.extend([value] * (round(cumulative * size / total) - len(table)))
    return tuple(table)


_REGION_TABLE: Final = _table(_REGIONS, 1000)
_NAT_TABLE: Final = _table(_NATIONALITIES, 1000)
_CAT_TABLE: Final = _table(_CATEGORIES, 100)
_DURATION_TABLE: Final = _table(_DURATIONS, 100)


_CREDIT_VALUES: Final = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}


def credit_code_check_char(first17: str) -> str:
    """GB 32100-2015 check character of a unified social credit code."""
    values = _CREDIT_VALUES
    total = sum([values[c] * w for c, w in zip(first17, _CREDIT_WEIGHTS)])
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def is_valid_credit_code(code: str) -> bool:
    return (
        len(code) == 18
        and all(c in _CREDIT_VALUES for c in code)
        and credit_code_check_char(code[:17]) == code[17]
    )


def _org_code(body8: str) -> str:
    """GB 11714 organisation code: 8 characters and their check character."""
    total = sum([int(c, 36) * w for c, w in zip(body8, _ORG_WEIGHTS)])
    check = 11 - total % 11
    return body8 + ("X" if check == 10 else "0" if check == 11 else str(check))


class Population:
    """The seeded permits: ``record(i)`` for ``0 <= i < count``, and the inverse maps."""

    __slots__ = ("seed", "count", "as_of", "_key", "_as_of_ord", "_employers_per_region", "_cache")

    def __init__(self, seed: int, count: int, as_of: dt.date) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        self.seed = seed
        self.count = count
        self.as_of = as_of
        self._key = hashlib.blake2b(b"permit-population-v1:%d" % seed, digest_size=32).digest()
        self._as_of_ord = as_of.toordinal()
        # Employers per province: a few big ones and a long tail (see _employer).
        self._employers_per_region = max(8, count // 150)
        self._cache: dict[tuple[str, int], str] = {}

    # -- identifiers --------------------------------------------------------------

    def digest(self, label: bytes, i: int) -> int:
        """A 256-bit integer, a keyed function of (seed, label, i)."""
        return int.from_bytes(
            hashlib.blake2b(label + i.to_bytes(8, "little"), key=self._key, digest_size=32).digest(),
            "little",
        )

    def index_of_pn(self, pn: str) -> int | None:
        """The index embedded in a permit number, or None when it cannot be one of ours."""
        if len(pn) < 18 or not pn.startswith("WP") or not pn[2:].isdigit():
            return None
        return int(pn[12:]) - 1

    @staticmethod
    def index_of_cn(cn: str) -> tuple[int, int] | None:
        """(permit index, card ordinal) of a seeded card number, or None."""
        if len(cn) != 15 or cn[0] != "S" or not cn[1:].isdigit():
            return None
        n = int(cn[7:])
        if n >= EVENT_CARD_BASE:
            return None
        return divmod(n, 4)

    def card_index(self, cn: str) -> int:
        """The ``cards`` Status List entry of a card number of ours (seeded or issued by
        an event): a function of the number, so that no entry is ever given twice."""
        if len(cn) != 15 or cn[0] != "S" or not cn[1:].isdigit():
            raise ValueError(f"not a card number of this population: {cn!r}")
        n = int(cn[7:])
        if n >= EVENT_CARD_BASE:
            return SEEDED_CARD_SLOTS * self.count + (n - EVENT_CARD_BASE)
        i, k = divmod(n, 4)
        return SEEDED_CARD_SLOTS * i + k

    def employer(self, region: str, e: int) -> str:
        """The unified social credit code of employer ``e`` of a province (GB 32100)."""
        cached = self._cache.get((region, e))
        if cached is not None:
            return cached
        h = self.digest(b"emp" + region.encode(), e)
        h, city = divmod(h, len(_CITY_SUFFIXES))
        # Registration authority 9 (market regulation), type 1 (enterprise).
        alphabet = CREDIT_CODE_ALPHABET
        body = "".join([alphabet[(h >> (5 * k)) % 31] for k in range(8)])
        org = _org_code(body)
        first17 = "91" + region[:2] + _CITY_SUFFIXES[city] + org
        code = first17 + credit_code_check_char(first17)
        if len(self._cache) < 500_000:
            self._cache[(region, e)] = code
        return code

    def pick_employer(self, region: str, h: int) -> str:
        # Cubing a uniform draw skews towards small indices: a few big employers.
        u = (h % 1_000_003) / 1_000_003
        return self.employer(region, int(self._employers_per_region * u * u * u))

    # -- records ------------------------------------------------------------------

    def record(self, i: int) -> PermitRecord:
        """The seeded state of permit ``i`` as of the population's date."""
        h = self.digest(b"permit", i)
        h, r = divmod(h, 1000)
        region = _REGION_TABLE[r]
        h, r = divmod(h, 100)
        cat = _CAT_TABLE[r]
        h, r = divmod(h, 1000)
        nat, tradition = _NAT_TABLE[r]
        surnames, given = _NAMES[tradition]
        h, r1 = divmod(h, 16)
        h, r2 = divmod(h, 16)
        name = f"{surnames[r1]}, {given[r2]}"
        h, r = divmod(h, 40 * 365)
        dob = dt.date.fromordinal(self._as_of_ord - 22 * 365 - r)
        h, r = divmod(h, 100)
        years = _DURATION_TABLE[r]
        period = years * 365
        # The current validity period started up to (period + 60) days ago: a share
        # has run out (~7%), the rest is in force.
        h, r = divmod(h, period + 60)
        vf = dt.date.fromordinal(self._as_of_ord - r)
        vt = dt.date.fromordinal(vf.toordinal() + period - 1)
        h, extensions = divmod(h, 3)
        h, r = divmod(h, 10)
        changes = (0, 0, 0, 0, 0, 0, 1, 1, 1, 2)[r]
        first_year = vf.year - extensions * years
        emp = self.pick_employer(region, h)
        h //= 1_000_003
        h, r = divmod(h, 100)
        cancelled = r < 4
        h, r = divmod(h, 100)
        ssn = f"9{region}{dob.year:04d}{i:08d}" if r < 88 else None
        cards: tuple[Card, ...] = ()
        card_events = 0
        if ssn is not None:
            h, r = divmod(h, 100)
            if r < 5:
                pass  # no card yet
            else:
                cn = [f"S{region}{4 * i + k:08d}" for k in range(3)]
                if r < 80:
                    cards = (Card(cn[0], "active"),)
                    card_events = 1
                elif r < 87:
                    cards = (Card(cn[0], "replaced"), Card(cn[1], "active"))
                    card_events = 2
                elif r < 94:
                    cards = (Card(cn[0], "lost"), Card(cn[1], "active"))
                    card_events = 3
                elif r < 97:
                    cards = (Card(cn[0], "lost"),)
                    card_events = 2
                else:
                    cards = (Card(cn[0], "lost"), Card(cn[1], "replaced"), Card(cn[2], "active"))
                    card_events = 4
        v = 1 + extensions + changes + card_events + (1 if cancelled else 0)
        return PermitRecord(
            pn=f"WP{region}{first_year:04d}{i + 1:06d}",
            n=name,
            nat=nat,
            dob=dob.isoformat(),
            cat=cat,
            emp=emp,
            vf=vf.isoformat(),
            vt=vt.isoformat(),
            v=v,
            status="cancelled" if cancelled else "active",
            ssn=ssn,
            cards=cards,
            si=i,
            ci=SEEDED_CARD_SLOTS * i + len(cards) - 1 if cards else None,
        )

    def new_record(self, i: int, issued_on: dt.date) -> PermitRecord:
        """A permit issued by an ``issue`` event on ``issued_on``: version 1, no card yet."""
        seeded = self.record(i)
        h = self.digest(b"new", i)
        years = _DURATION_TABLE[h % 100]
        vt = dt.date.fromordinal(issued_on.toordinal() + years * 365 - 1)
        region = seeded.pn[2:8]
        return PermitRecord(
            pn=f"WP{region}{issued_on.year:04d}{i + 1:06d}",
            n=seeded.n,
            nat=seeded.nat,
            dob=seeded.dob,
            cat=seeded.cat,
            emp=seeded.emp,
            vf=issued_on.isoformat(),
            vt=vt.isoformat(),
            v=1,
            status="active",
            ssn=None,
            cards=(),
            si=i,
            ci=None,
        )

    def ssn_for(self, i: int, record: PermitRecord) -> str:
        """The social security number permit ``i`` gets when its first card is issued."""
        return f"9{record.pn[2:8]}{record.dob[:4]}{i:08d}"
