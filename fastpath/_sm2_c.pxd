# C declarations of the SM2 binding (fastpath/_sm2_c.pyx).
#
# libcrypto is OpenSSL 3's, the copy Python's ssl module loads, opened with dlopen
# at import: the build needs no OpenSSL headers (no libssl-dev), and the process
# holds one libcrypto.

cdef class OpenSslKey:
    """A validated SM2 public key as libcrypto holds it (EVP_PKEY), with its user id."""
    cdef void* pkey                 # EVP_PKEY*, owned
    cdef readonly bytes point       # 0x04 || x || y
    cdef readonly bytes user_id     # the distinguishing identifier of GB/T 32918.2


# 0 when ``signature`` (64 bytes, r || s) is a valid SM2-with-SM3 signature of
# ``message`` by ``pkey`` with ``user_id``; r and s out of [1, n - 1] fail before
# libcrypto sees them. Callers hold a reference to the key's OpenSslKey.
cdef int sm2_verify(void* pkey, const unsigned char* user_id, size_t user_id_len,
                    const unsigned char* signature,
                    const unsigned char* message, size_t message_len) noexcept nogil
