# C declarations of the libsodium binding (fastpath/_sodium_c.pyx).
#
# libsodium is the copy that PyNaCl ships; it is opened with dlopen at import so
# the build needs no libsodium headers and the process holds one libsodium.

cdef int ed25519_verify(const unsigned char* signature,
                        const unsigned char* message, size_t message_len,
                        const unsigned char* public_key) noexcept nogil
