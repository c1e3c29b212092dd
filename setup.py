"""Build the compiled fastpath, or the pure-Python twin alone.

FASTPATH_NO_EXTENSIONS=1  build (and later import) the pure-Python twin only.
FASTPATH_DEBUG=1          -O0 -g, Cython annotations (fastpath/*.html), line tracing.
FASTPATH_SANITIZE=1       with FASTPATH_DEBUG: AddressSanitizer + UBSan.
FASTPATH_FUZZ=1           coverage instrumentation for libFuzzer (atheris), so that the
                          fuzzers are guided by the compiled twin's branches too; needs
                          clang: CC=clang LDSHARED="clang -shared" (see fuzz/README.md).
"""

import glob
import os
import sys

from setuptools import setup

NO_EXTENSIONS = os.environ.get("FASTPATH_NO_EXTENSIONS", "") not in ("", "0")
DEBUG = os.environ.get("FASTPATH_DEBUG", "") not in ("", "0")
SANITIZE = os.environ.get("FASTPATH_SANITIZE", "") not in ("", "0")
FUZZ = os.environ.get("FASTPATH_FUZZ", "") not in ("", "0")


def _say(message: str) -> None:
    print(f"*** fastpath: {message}", file=sys.stderr)


def extensions():
    if NO_EXTENSIONS:
        _say("FASTPATH_NO_EXTENSIONS is set: building the pure-Python twin only")
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    cflags = ["-O0", "-g3"] if DEBUG else ["-O3"]
    ldflags = []
    sanitizers = (["address", "undefined"] if SANITIZE else []) + (["fuzzer-no-link"] if FUZZ else [])
    if sanitizers:
        cflags += ["-fsanitize=" + ",".join(sanitizers), "-fno-omit-frame-pointer"]
        ldflags += ["-fsanitize=" + ",".join(sanitizers)]
    modules = [
        Extension(
            "fastpath." + os.path.splitext(os.path.basename(path))[0],
            [path],
            libraries=["z"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
        for path in sorted(glob.glob("fastpath/*.pyx"))
    ]
    # The service's own compiled twins (each beside its Python twin, same switch).
    modules += [
        Extension(
            os.path.splitext(path)[0].replace(os.sep, "."),
            [path],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
        for path in sorted(glob.glob("verifier/**/_*_c.pyx", recursive=True))
    ]
    _say("building the compiled twin: " + ", ".join(m.name for m in modules)
         + (" (debug)" if DEBUG else "") + (" (instrumented for fuzzing)" if FUZZ else ""))
    return cythonize(
        modules,
        language_level=3,
        annotate=DEBUG,
        compiler_directives={
            "boundscheck": True,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
            "linetrace": DEBUG,
        },
    )


setup(ext_modules=extensions())
