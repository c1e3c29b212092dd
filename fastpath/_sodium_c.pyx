# cython: language_level=3
"""Ed25519 verification through the libsodium that PyNaCl ships.

PyNaCl's cffi module does not bind ``crypto_sign_verify_detached``, but its
shared object exports it: open that object with ``dlopen`` (RTLD_LOCAL, so its
symbols do not leak into the process) and call the function through a pointer,
with the GIL released by the caller.
"""

from posix.dlfcn cimport dlopen, dlsym, dlerror, RTLD_NOW, RTLD_LOCAL

ctypedef int (*verify_detached_t)(const unsigned char* sig, const unsigned char* m,
                                  unsigned long long mlen,
                                  const unsigned char* pk) noexcept nogil
ctypedef int (*sodium_init_t)() noexcept nogil

cdef verify_detached_t _verify_detached = NULL


cdef void* _symbol(void* handle, const char* name) except NULL:
    cdef void* address = dlsym(handle, name)
    if address == NULL:
        raise ImportError(f"libsodium from PyNaCl does not export {name.decode()}")
    return address


cdef int ed25519_verify(const unsigned char* signature,
                        const unsigned char* message, size_t message_len,
                        const unsigned char* public_key) noexcept nogil:
    """0 when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    signature is 64 bytes and public_key 32 bytes: the callers check the lengths.
    """
    return _verify_detached(signature, message, message_len, public_key)


def verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """Python-level entry for tests: True when the signature verifies."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    cdef const unsigned char* s = signature
    cdef const unsigned char* m = message
    cdef const unsigned char* k = public_key
    cdef size_t n = len(message)
    cdef int rc
    with nogil:
        rc = _verify_detached(s, m, n, k)
    return rc == 0


def _load() -> str:
    global _verify_detached
    import nacl._sodium

    path = nacl._sodium.__file__
    cdef bytes encoded = path.encode()
    cdef void* handle = dlopen(encoded, RTLD_NOW | RTLD_LOCAL)
    if handle == NULL:
        message = dlerror()
        raise ImportError(f"cannot dlopen PyNaCl's libsodium at {path}: "
                          f"{message.decode() if message != NULL else '?'}")
    cdef sodium_init_t init = <sodium_init_t>_symbol(handle, b"sodium_init")
    # 0 initialised now, 1 already initialised (by PyNaCl), -1 failure.
    if init() < 0:
        raise ImportError("libsodium's sodium_init failed")
    _verify_detached = <verify_detached_t>_symbol(handle, b"crypto_sign_verify_detached")
    return path


LIBSODIUM_PATH = _load()
