# cython: language_level=3
"""SM2-with-SM3 verification through OpenSSL 3's libcrypto (WIRE-FORMAT 9).

Which libcrypto: the one Python's ``ssl`` module already loads. ``_ssl`` is
imported first, then ``libcrypto.so.3`` is opened by its soname, which the
dynamic linker resolves to the copy already in the process when there is one
(else the system's). The few functions are declared here and called through
pointers (``dlsym``), as ``_sodium_c`` does for libsodium: the build needs no
OpenSSL headers, so ``pip install`` on a fresh machine with a C compiler and
Python works without ``libssl-dev``.

Nothing here does curve arithmetic: a key is decoded and checked by libcrypto
(``d2i_PUBKEY``, ``EVP_PKEY_public_check``: on the curve, not infinity, of
order n), a signature verified by ``EVP_DigestVerify`` with SM3 and the key's
``distid``. Our own code only checks the range of r and s (a byte comparison
with n) and writes the DER ``ECDSA-Sig-Value`` that libcrypto takes.

When this libcrypto has no SM2 or SM3 (OpenSSL older than 3, or built with
``no-sm2``, as some distributions do), ``AVAILABLE`` is False and
``UNAVAILABLE_REASON`` says why: the trust list then carries SM2 keys without
an ``OpenSslKey`` and the compiled twin verifies them with gmalg, as the Python
twin does (``fastpath.SM2_BACKEND`` names which).
"""

from posix.dlfcn cimport dlopen, dlsym, dlerror, RTLD_NOW, RTLD_LOCAL
from libc.string cimport memcmp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from fastpath._sm2 import LIBCRYPTO_SONAME, N_BYTES as _N_BYTES_OBJECT, SPKI_PREFIX as _SPKI_PREFIX

cdef extern from "<dlfcn.h>" nogil:
    ctypedef struct Dl_info:
        const char* dli_fname
    int dladdr(const void* address, Dl_info* info)

# OSSL_PARAM (openssl/core.h): the layout is part of OpenSSL 3's stable ABI.
ctypedef struct OSSL_PARAM:
    const char* key
    unsigned int data_type
    void* data
    size_t data_size
    size_t return_size

cdef enum:
    OSSL_PARAM_OCTET_STRING = 5
    OPENSSL_VERSION_3 = 0x30000000
    DER_MAX = 72          # SEQUENCE { INTEGER r, INTEGER s }, each at most 33 bytes of content

ctypedef unsigned long (*version_num_t)() noexcept nogil
ctypedef const char* (*version_t)(int which) noexcept nogil
ctypedef void* (*d2i_pubkey_t)(void** out, const unsigned char** data, long length) noexcept nogil
ctypedef int (*pkey_is_a_t)(const void* pkey, const char* name) noexcept nogil
ctypedef void (*pkey_free_t)(void* pkey) noexcept nogil
ctypedef void* (*pkey_ctx_new_from_pkey_t)(void* libctx, void* pkey, const char* propq) noexcept nogil
ctypedef int (*pkey_public_check_t)(void* pkey_ctx) noexcept nogil
ctypedef void (*pkey_ctx_free_t)(void* pkey_ctx) noexcept nogil
ctypedef int (*pkey_ctx_set_params_t)(void* pkey_ctx, const OSSL_PARAM* params) noexcept nogil
ctypedef void* (*md_fetch_t)(void* libctx, const char* name, const char* propq) noexcept nogil
ctypedef void* (*signature_fetch_t)(void* libctx, const char* name, const char* propq) noexcept nogil
ctypedef void (*signature_free_t)(void* signature) noexcept nogil
ctypedef void* (*md_ctx_new_t)() noexcept nogil
ctypedef void (*md_ctx_free_t)(void* md_ctx) noexcept nogil
ctypedef int (*digest_verify_init_t)(void* md_ctx, void** pkey_ctx, const void* md, void* engine,
                                     void* pkey) noexcept nogil
ctypedef int (*digest_verify_t)(void* md_ctx, const unsigned char* signature, size_t signature_len,
                                const unsigned char* data, size_t data_len) noexcept nogil
ctypedef void (*err_clear_t)() noexcept nogil

cdef d2i_pubkey_t _d2i_PUBKEY = NULL
cdef pkey_is_a_t _EVP_PKEY_is_a = NULL
cdef pkey_free_t _EVP_PKEY_free = NULL
cdef pkey_ctx_new_from_pkey_t _EVP_PKEY_CTX_new_from_pkey = NULL
cdef pkey_public_check_t _EVP_PKEY_public_check = NULL
cdef pkey_ctx_free_t _EVP_PKEY_CTX_free = NULL
cdef pkey_ctx_set_params_t _EVP_PKEY_CTX_set_params = NULL
cdef md_ctx_new_t _EVP_MD_CTX_new = NULL
cdef md_ctx_free_t _EVP_MD_CTX_free = NULL
cdef digest_verify_init_t _EVP_DigestVerifyInit = NULL
cdef digest_verify_t _EVP_DigestVerify = NULL
cdef err_clear_t _ERR_clear_error = NULL
cdef void* _SM3 = NULL              # EVP_MD*, fetched once, kept for the process

cdef unsigned char _N[32]           # the order n, big-endian
cdef bytes _N_BYTES = _N_BYTES_OBJECT
for _i in range(32):
    _N[_i] = _N_BYTES[_i]
cdef bytes SPKI_PREFIX = _SPKI_PREFIX
cdef char* DISTID = b"distid"       # OSSL_PKEY_PARAM_DIST_ID


# --- what our own code does: the range of r and s, the DER they travel in -------------

cdef inline bint _in_range(const unsigned char* v) noexcept nogil:
    """A 32-byte big-endian integer in [1, n - 1] (WIRE-FORMAT 9). Not constant-time: a
    signature is public."""
    cdef int i
    cdef bint zero = True
    for i in range(32):
        if v[i] != 0:
            zero = False
            break
    return not zero and memcmp(v, _N, 32) < 0


cdef inline size_t _der_integer(const unsigned char* v, unsigned char* out) noexcept nogil:
    """DER INTEGER of a positive 32-byte big-endian value: no leading zero bytes, one
    0x00 before a first byte of 0x80 or more (X.690 8.3)."""
    cdef size_t start = 0
    cdef size_t n, i
    while start < 31 and v[start] == 0:
        start += 1
    n = 32 - start
    out[0] = 0x02
    if v[start] & 0x80:
        out[1] = <unsigned char>(n + 1)
        out[2] = 0
        for i in range(n):
            out[3 + i] = v[start + i]
        return n + 3
    out[1] = <unsigned char>n
    for i in range(n):
        out[2 + i] = v[start + i]
    return n + 2


cdef inline size_t _der_signature(const unsigned char* signature, unsigned char* out) noexcept nogil:
    """The ECDSA-Sig-Value (RFC 5480; SM2's in GB/T 35276) of r || s, which libcrypto takes."""
    cdef size_t n = 2
    n += _der_integer(signature, out + n)
    n += _der_integer(signature + 32, out + n)
    out[0] = 0x30
    out[1] = <unsigned char>(n - 2)  # at most 70: the short form
    return n


# --- what libcrypto does ---------------------------------------------------------------

cdef int _evp_verify(void* pkey, const unsigned char* user_id, size_t user_id_len,
                     const unsigned char* der, size_t der_len,
                     const unsigned char* message, size_t message_len) noexcept nogil:
    """OpenSSL's SM2 verify of a DER signature: SM3 over Z (from the user id and the key)
    then the message. 0 when it holds. Failures leave nothing in this thread's OpenSSL
    error queue (Python's ssl module reads that queue)."""
    cdef OSSL_PARAM params[2]
    cdef void* pkey_ctx = NULL
    cdef void* md_ctx = _EVP_MD_CTX_new()
    cdef int rc
    if md_ctx == NULL:
        return -1
    rc = _EVP_DigestVerifyInit(md_ctx, &pkey_ctx, _SM3, NULL, pkey)
    if rc == 1:
        # After the init: OpenSSL 3.0 refuses a distid passed to EVP_DigestVerifyInit_ex.
        params[0].key = DISTID
        params[0].data_type = OSSL_PARAM_OCTET_STRING
        params[0].data = <void*>user_id
        params[0].data_size = user_id_len
        params[0].return_size = 0
        params[1].key = NULL
        params[1].data_type = 0
        params[1].data = NULL
        params[1].data_size = 0
        params[1].return_size = 0
        rc = _EVP_PKEY_CTX_set_params(pkey_ctx, params)
    if rc == 1:
        rc = _EVP_DigestVerify(md_ctx, der, der_len, message, message_len)
    _EVP_MD_CTX_free(md_ctx)  # frees pkey_ctx too: the init made it for md_ctx
    if rc != 1:
        _ERR_clear_error()
        return 1
    return 0


cdef int sm2_verify(void* pkey, const unsigned char* user_id, size_t user_id_len,
                    const unsigned char* signature,
                    const unsigned char* message, size_t message_len) noexcept nogil:
    cdef unsigned char der[DER_MAX]
    cdef size_t der_len
    if not _in_range(signature) or not _in_range(signature + 32):
        return 1
    der_len = _der_signature(signature, der)
    return _evp_verify(pkey, user_id, user_id_len, der, der_len, message, message_len)


cdef class OpenSslKey:
    def __cinit__(self, bytes point not None, bytes user_id not None):
        cdef bytes spki
        cdef const unsigned char* data
        cdef void* pkey_ctx
        cdef int rc
        self.pkey = NULL
        if not AVAILABLE:
            raise ValueError(f"no SM2 in this process's libcrypto: {UNAVAILABLE_REASON}")
        if PyBytes_GET_SIZE(point) != 65 or point[0] != 0x04:
            raise ValueError("an SM2 point is 65 bytes, 0x04 || x || y")
        if not 1 <= PyBytes_GET_SIZE(user_id) <= 8191:
            raise ValueError("the user id is 1 to 8191 bytes")
        self.point = point
        self.user_id = user_id
        spki = SPKI_PREFIX + point
        data = <const unsigned char*>PyBytes_AS_STRING(spki)
        self.pkey = _d2i_PUBKEY(NULL, &data, PyBytes_GET_SIZE(spki))
        if self.pkey == NULL:
            _ERR_clear_error()
            raise ValueError("libcrypto refuses the point (not on the SM2 curve)")
        if _EVP_PKEY_is_a(self.pkey, b"SM2") != 1:
            raise ValueError("libcrypto does not take the key as an SM2 key")
        pkey_ctx = _EVP_PKEY_CTX_new_from_pkey(NULL, self.pkey, NULL)
        if pkey_ctx == NULL:
            _ERR_clear_error()
            raise MemoryError("EVP_PKEY_CTX_new_from_pkey")
        # On the curve, not the point at infinity, coordinates below p, n * Q = infinity.
        rc = _EVP_PKEY_public_check(pkey_ctx)
        _EVP_PKEY_CTX_free(pkey_ctx)
        if rc != 1:
            _ERR_clear_error()
            raise ValueError("libcrypto's public key check refuses the point")

    def __dealloc__(self):
        if self.pkey != NULL:
            _EVP_PKEY_free(self.pkey)
            self.pkey = NULL

    def __repr__(self):
        return f"OpenSslKey(point={self.point.hex()!r}, user_id={self.user_id!r})"


# --- Python-level entries, for tests and the benchmarks ---------------------------------

def verify(OpenSslKey key not None, bytes signature not None, bytes message not None) -> bool:
    """True when ``signature`` (64 bytes, r || s) verifies, the GIL released: the compiled
    twin's SM2 path, without the QR around it."""
    if PyBytes_GET_SIZE(signature) != 64:
        return False
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(signature)
    cdef const unsigned char* m = <const unsigned char*>PyBytes_AS_STRING(message)
    cdef size_t n = PyBytes_GET_SIZE(message)
    cdef const unsigned char* uid = <const unsigned char*>PyBytes_AS_STRING(key.user_id)
    cdef size_t uid_len = PyBytes_GET_SIZE(key.user_id)
    cdef int rc
    with nogil:
        rc = sm2_verify(key.pkey, uid, uid_len, s, m, n)
    return rc == 0


def bare_verify(OpenSslKey key not None, bytes der_signature not None, bytes message not None) -> bool:
    """OpenSSL's bare SM2 verify: a ready DER signature, the libcrypto calls and nothing
    else (the benchmarks' anchor). The GIL is released."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(der_signature)
    cdef size_t d_len = PyBytes_GET_SIZE(der_signature)
    cdef const unsigned char* m = <const unsigned char*>PyBytes_AS_STRING(message)
    cdef size_t n = PyBytes_GET_SIZE(message)
    cdef const unsigned char* uid = <const unsigned char*>PyBytes_AS_STRING(key.user_id)
    cdef size_t uid_len = PyBytes_GET_SIZE(key.user_id)
    cdef int rc
    with nogil:
        rc = _evp_verify(key.pkey, uid, uid_len, d, d_len, m, n)
    return rc == 0


def der_signature(bytes signature not None) -> bytes:
    """The DER ECDSA-Sig-Value that libcrypto is given for a 64-byte r || s."""
    cdef unsigned char der[DER_MAX]
    cdef size_t n
    if PyBytes_GET_SIZE(signature) != 64:
        raise ValueError("an SM2 signature is 64 bytes, r || s")
    n = _der_signature(<const unsigned char*>PyBytes_AS_STRING(signature), der)
    return PyBytes_FromStringAndSize(<const char*>der, n)


# --- loading ---------------------------------------------------------------------------

class _Unavailable(Exception):
    pass


cdef void* _symbol(void* handle, const char* name) except NULL:
    cdef void* address = dlsym(handle, name)
    if address == NULL:
        raise _Unavailable(f"libcrypto does not export {name.decode()} (not OpenSSL 3?)")
    return address


def _load():
    """(path, version) of the libcrypto whose SM2 is used; _Unavailable when there is none."""
    global _d2i_PUBKEY, _EVP_PKEY_is_a, _EVP_PKEY_free, _EVP_PKEY_CTX_new_from_pkey
    global _EVP_PKEY_public_check, _EVP_PKEY_CTX_free, _EVP_PKEY_CTX_set_params
    global _EVP_MD_CTX_new, _EVP_MD_CTX_free, _EVP_DigestVerifyInit, _EVP_DigestVerify
    global _ERR_clear_error, _SM3
    cdef void* handle
    cdef Dl_info info
    cdef version_num_t version_num
    cdef version_t version
    cdef md_fetch_t md_fetch
    cdef signature_fetch_t signature_fetch
    cdef signature_free_t signature_free
    cdef void* sm2_signature
    try:
        import _ssl  # noqa: F401  (loads the libcrypto that Python's ssl module uses)
    except ImportError:
        pass  # a Python without ssl: the system's libcrypto, if any
    cdef bytes soname = LIBCRYPTO_SONAME.encode()
    handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL)
    if handle == NULL:
        message = dlerror()
        raise _Unavailable(f"cannot dlopen {LIBCRYPTO_SONAME}: {message.decode() if message != NULL else '?'}")
    version_num = <version_num_t>_symbol(handle, b"OpenSSL_version_num")
    if version_num() < OPENSSL_VERSION_3:
        raise _Unavailable(f"libcrypto is older than OpenSSL 3 ({version_num():#x})")
    version = <version_t>_symbol(handle, b"OpenSSL_version")
    path = LIBCRYPTO_SONAME
    if dladdr(<void*>version, &info) != 0 and info.dli_fname != NULL:
        path = info.dli_fname.decode()
    _d2i_PUBKEY = <d2i_pubkey_t>_symbol(handle, b"d2i_PUBKEY")
    _EVP_PKEY_is_a = <pkey_is_a_t>_symbol(handle, b"EVP_PKEY_is_a")
    _EVP_PKEY_free = <pkey_free_t>_symbol(handle, b"EVP_PKEY_free")
    _EVP_PKEY_CTX_new_from_pkey = <pkey_ctx_new_from_pkey_t>_symbol(handle, b"EVP_PKEY_CTX_new_from_pkey")
    _EVP_PKEY_public_check = <pkey_public_check_t>_symbol(handle, b"EVP_PKEY_public_check")
    _EVP_PKEY_CTX_free = <pkey_ctx_free_t>_symbol(handle, b"EVP_PKEY_CTX_free")
    _EVP_PKEY_CTX_set_params = <pkey_ctx_set_params_t>_symbol(handle, b"EVP_PKEY_CTX_set_params")
    _EVP_MD_CTX_new = <md_ctx_new_t>_symbol(handle, b"EVP_MD_CTX_new")
    _EVP_MD_CTX_free = <md_ctx_free_t>_symbol(handle, b"EVP_MD_CTX_free")
    _EVP_DigestVerifyInit = <digest_verify_init_t>_symbol(handle, b"EVP_DigestVerifyInit")
    _EVP_DigestVerify = <digest_verify_t>_symbol(handle, b"EVP_DigestVerify")
    _ERR_clear_error = <err_clear_t>_symbol(handle, b"ERR_clear_error")
    md_fetch = <md_fetch_t>_symbol(handle, b"EVP_MD_fetch")
    signature_fetch = <signature_fetch_t>_symbol(handle, b"EVP_SIGNATURE_fetch")
    signature_free = <signature_free_t>_symbol(handle, b"EVP_SIGNATURE_free")
    _SM3 = md_fetch(NULL, b"SM3", NULL)
    if _SM3 == NULL:
        _ERR_clear_error()
        raise _Unavailable(f"{path} has no SM3 (OpenSSL built without it)")
    sm2_signature = signature_fetch(NULL, b"SM2", NULL)
    if sm2_signature == NULL:
        _ERR_clear_error()
        raise _Unavailable(f"{path} has no SM2 signature (OpenSSL built with no-sm2)")
    signature_free(sm2_signature)
    return path, version(0).decode()


try:
    LIBCRYPTO_PATH, OPENSSL_VERSION = _load()
    AVAILABLE = True
    UNAVAILABLE_REASON = None
except _Unavailable as _exc:
    LIBCRYPTO_PATH = OPENSSL_VERSION = None
    AVAILABLE = False
    UNAVAILABLE_REASON = str(_exc)
