"""The two twins: which one is loaded, the chooser, and that both give the same verdicts."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import pytest

import fastpath
from fastpath import codes

from . import craft, test_malformed, test_verify
from .craft import ACTIVE, NOW, PERMIT, qr, sign1

PUBLIC_NAMES = ("verify_qr", "verify_card_certificate", "check_card_signature", "verify_card")
PACKAGE = Path(fastpath.__file__).parent


def test_c_twin_loaded() -> None:
    # a broken build must not quietly test the Python twin twice
    if fastpath.NO_EXTENSIONS:
        assert fastpath.IMPLEMENTATION == "py"
        return
    assert fastpath.IMPLEMENTATION == "c", "the compiled twin did not load: build it (pip install -e .)"
    from fastpath import _verify_c  # type: ignore[attr-defined]

    assert fastpath.verify_qr is _verify_c.verify_qr


def test_public_api() -> None:
    for name in fastpath.__all__:
        assert hasattr(fastpath, name), name
    implementation = sys.modules[f"fastpath._verify_{fastpath.IMPLEMENTATION}"]
    for name in PUBLIC_NAMES:
        assert getattr(fastpath, name) is getattr(implementation, name)


def test_twins_export_the_same_names(twin: ModuleType) -> None:
    for name in PUBLIC_NAMES:
        assert callable(getattr(twin, name)), name


def test_twins_return_the_one_verdict_class(twin: ModuleType, trust: fastpath.TrustList) -> None:
    assert type(twin.verify_qr(craft.wp1(ACTIVE), trust, NOW)) is fastpath.Verdict
    assert type(twin.verify_qr("x", trust, NOW)) is fastpath.Verdict
    assert type(twin.verify_card_certificate(b"", trust, NOW)) is fastpath.Verdict


def _run(code: str, cwd: Path, switch: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTPATH_NO_EXTENSIONS"}
    if switch is not None:
        env["FASTPATH_NO_EXTENSIONS"] = switch
    return subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("switch", "expected"), [("1", "py"), ("", "c"), ("0", "c"), (None, "c")])
def test_the_switch(switch: str | None, expected: str) -> None:
    built = any((PACKAGE / f"_verify_c{suffix}").exists() for suffix in EXTENSION_SUFFIXES)
    if not built:
        if not fastpath.NO_EXTENSIONS:
            pytest.fail("the compiled twin is not built")
        expected = "py"  # a pure-Python build: every setting gives the Python twin
    done = _run("import fastpath; print(fastpath.IMPLEMENTATION)", PACKAGE.parent, switch)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


# The project is installed editable: its import finder would resolve fastpath's
# submodules from the work tree even for a copy elsewhere. Drop it in the child.
_ONLY_THE_COPY = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                  "if '__editable__' not in getattr(f, '__module__', '')]; ")


def _copy_package(tmp_path: Path) -> Path:
    copy = tmp_path / "fastpath"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"))
    return copy


def test_absent_extension_falls_back_silently(tmp_path: Path) -> None:
    # no compiled file at all (no compiler): the Python twin, without a warning (-W error)
    _copy_package(tmp_path)
    done = _run(_ONLY_THE_COPY + "import fastpath; print(fastpath.IMPLEMENTATION, fastpath.__file__)",
                tmp_path, None)
    assert done.returncode == 0, done.stderr
    implementation, path = done.stdout.split()
    assert implementation == "py" and path.startswith(str(tmp_path))


def test_broken_extension_is_an_error(tmp_path: Path) -> None:
    # an extension that is there but cannot import is a broken build: the error propagates
    copy = _copy_package(tmp_path)
    (copy / "_verify_c.py").write_text("raise ImportError('undefined symbol: crypto_sign_verify_detached')\n")
    done = _run(_ONLY_THE_COPY + "import fastpath", tmp_path, None)
    assert done.returncode != 0
    assert "undefined symbol" in done.stderr


# --- both twins agree ------------------------------------------------------------
def _agree(c_twin: ModuleType, py_twin: ModuleType, trust: fastpath.TrustList, text: object) -> fastpath.Verdict:
    c_verdict = c_twin.verify_qr(text, trust, NOW, cache=False)
    py_verdict = py_twin.verify_qr(text, trust, NOW, cache=False)
    assert c_verdict == py_verdict, text
    assert c_verdict.as_dict() == py_verdict.as_dict()
    return py_verdict


def _corpus() -> list[str]:
    texts: list[str] = [p.values[0] for p in test_malformed.TEXT_CASES]
    texts += [test_malformed.b45(p.values[0]) for p in test_malformed.ZLIB_CASES]
    texts += [qr(p.values[0]) for p in test_malformed.CBOR_CASES + test_malformed.COSE_CASES]
    texts += [qr(sign1(ACTIVE, protected=p.values[0], unprotected=p.values[1])) for p in test_verify.HEADER_CASES]
    texts += [qr(sign1(ACTIVE, p.values[0]), f"{p.values[1]}:") for p in test_verify.CLAIMS_CASES]
    return texts


CORPUS = _corpus()


def test_twins_agree_on_the_corpus(c_twin: ModuleType, py_twin: ModuleType, trust: fastpath.TrustList) -> None:
    results = {_agree(c_twin, py_twin, trust, text).result for text in CORPUS}
    assert {codes.MALFORMED, codes.UNSUPPORTED, codes.UNKNOWN_KEY} <= results


def test_twins_agree_on_random_mutations(c_twin: ModuleType, py_twin: ModuleType, trust: fastpath.TrustList) -> None:
    # deterministic: 3,000 single-character mutations of valid codes, plus byte flips inside the message
    rng = random.Random(20260101)
    valid = [craft.wp1(ACTIVE), craft.es1(ACTIVE, iat=NOW), craft.wp1(ACTIVE, permit={**PERMIT, "v": 9})]
    alphabet = craft.BASE45_ALPHABET + "a\n\u00e9"
    seen = set()
    for _ in range(2000):
        text = list(rng.choice(valid))
        i = rng.randrange(len(text))
        action = rng.randrange(3)
        if action == 0:
            text[i] = rng.choice(alphabet)
        elif action == 1:
            text.insert(i, rng.choice(alphabet))
        else:
            del text[i]
        verdict = _agree(c_twin, py_twin, trust, "".join(text))
        seen.add(verdict.reasons)
    message = sign1(ACTIVE)
    for _ in range(1000):
        mutated = bytearray(message)
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        verdict = _agree(c_twin, py_twin, trust, qr(bytes(mutated)))
        seen.add(verdict.reasons)
    assert len(seen) > 5  # the mutations reached many different checks


def test_twins_agree_on_card_certificates(c_twin: ModuleType, py_twin: ModuleType,
                                          trust: fastpath.TrustList) -> None:
    certificates = [p.values[0] for p in test_verify.CARD_CERTIFICATE_CASES]
    certificates += [sign1(ACTIVE, craft.claims("CARD"))]
    rng = random.Random(6)
    good = sign1(ACTIVE, craft.claims("CARD"))
    for _ in range(500):
        mutated = bytearray(good)
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        certificates.append(bytes(mutated))
    challenge = bytes(32)
    for certificate in certificates:
        c_verdict = c_twin.verify_card(certificate, challenge, craft.card_sign(challenge), trust, NOW)
        py_verdict = py_twin.verify_card(certificate, challenge, craft.card_sign(challenge), trust, NOW)
        assert c_verdict == py_verdict, certificate
        assert c_verdict.card_public_key == py_verdict.card_public_key
