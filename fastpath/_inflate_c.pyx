# cython: language_level=3
"""Bounded inflate of one zlib stream (RFC 1950) with the C zlib API.

The zlib header and the Adler-32 trailer are checked here; zlib inflates the raw
deflate data between them into a buffer of INFLATE_BUFFER bytes, so a bomb costs
at most that much output before it is stopped (never inflated whole).

Each thread keeps one raw-inflate z_stream and resets it per call (inflateInit
allocates ~7 KB of state: measured slower than inflateReset); a thread-specific
key frees it when the thread ends.
"""

from fastpath._reasons_c cimport Reason

cdef extern from "zlib.h" nogil:
    ctypedef struct z_stream:
        unsigned char* next_in
        unsigned int avail_in
        unsigned long total_in
        unsigned char* next_out
        unsigned int avail_out
        unsigned long total_out
        void* zalloc
        void* zfree
        void* opaque
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_DATA_ERROR, Z_MEM_ERROR, Z_FINISH
    int inflateInit2(z_stream* strm, int window_bits)
    int inflateReset(z_stream* strm)
    int inflate(z_stream* strm, int flush)
    int inflateEnd(z_stream* strm)
    unsigned long adler32(unsigned long adler, const unsigned char* buf, unsigned int length)

cdef extern from * nogil:
    """
    #include <pthread.h>
    #include <stdlib.h>
    #include <zlib.h>

    static pthread_key_t fastpath_stream_key;

    static void fastpath_free_stream(void *stream) {
        inflateEnd((z_stream *)stream);
        free(stream);
    }

    static int fastpath_stream_key_create(void) {
        return pthread_key_create(&fastpath_stream_key, fastpath_free_stream);
    }

    /* This thread's raw-inflate stream, reset; NULL when out of memory. */
    static z_stream *fastpath_thread_stream(void) {
        z_stream *stream = (z_stream *)pthread_getspecific(fastpath_stream_key);
        if (stream != NULL) {
            if (inflateReset(stream) == Z_OK)
                return stream;
            return NULL;
        }
        stream = (z_stream *)calloc(1, sizeof(z_stream));
        if (stream == NULL)
            return NULL;
        if (inflateInit2(stream, -15) != Z_OK) {
            free(stream);
            return NULL;
        }
        if (pthread_setspecific(fastpath_stream_key, stream) != 0) {
            fastpath_free_stream(stream);
            return NULL;
        }
        return stream;
    }
    """
    int fastpath_stream_key_create()
    z_stream* fastpath_thread_stream()


if fastpath_stream_key_create() != 0:
    raise ImportError("fastpath: pthread_key_create failed")



cdef Reason zlib_inflate_bounded(const unsigned char* data, Py_ssize_t n,
                                 unsigned char* out, Py_ssize_t* out_len) noexcept nogil:
    """Inflate the zlib stream ``data[:n]`` into ``out`` (INFLATE_BUFFER bytes).

    Returns OK with out_len set, or the reason (decision 3): ZLIB_HEADER,
    ZLIB_DATA (bad deflate data, bad Adler-32), ZLIB_TRUNCATED, ZLIB_TRAILING,
    ZLIB_TOO_LARGE.
    """
    cdef unsigned int cmf, flg
    cdef z_stream* stream
    cdef int rc
    cdef Py_ssize_t produced, rest
    cdef const unsigned char* trailer
    cdef unsigned long expected
    if n < 2:
        # Empty input or half a header: the stream ends before it starts.
        return Reason.ZLIB_TRUNCATED
    cmf = data[0]
    flg = data[1]
    # RFC 1950 2.2: CM 8 (deflate), CINFO <= 7, FCHECK, no preset dictionary.
    if (cmf & 0x0F) != 8 or (cmf >> 4) > 7 or (cmf * 256 + flg) % 31 != 0 or (flg & 0x20):
        return Reason.ZLIB_HEADER
    stream = fastpath_thread_stream()
    if stream == NULL:
        return Reason.ZLIB_DATA  # out of memory: refuse rather than guess
    stream.next_in = <unsigned char*>(data + 2)
    stream.avail_in = <unsigned int>(n - 2)
    stream.next_out = out
    stream.avail_out = INFLATE_BUFFER
    rc = inflate(stream, Z_FINISH)
    produced = INFLATE_BUFFER - stream.avail_out
    if rc == Z_STREAM_END:
        # The order of the Python twin (zlib's own wrapper): a bad Adler-32 is a
        # data error even when the output reached the cap, then the cap, then a
        # missing trailer, then bytes after it.
        rest = stream.avail_in
        if rest >= 4:
            trailer = stream.next_in
            expected = ((<unsigned long>trailer[0] << 24) | (<unsigned long>trailer[1] << 16)
                        | (<unsigned long>trailer[2] << 8) | trailer[3])
            if adler32(adler32(0, NULL, 0), out, <unsigned int>produced) != expected:
                return Reason.ZLIB_DATA
        if produced > INFLATE_MAX:
            return Reason.ZLIB_TOO_LARGE
        if rest < 4:
            return Reason.ZLIB_TRUNCATED
        if rest > 4:
            return Reason.ZLIB_TRAILING
        out_len[0] = produced
        return Reason.OK
    if rc == Z_DATA_ERROR:
        return Reason.ZLIB_DATA
    if stream.avail_out == 0:
        # INFLATE_BUFFER bytes out and the stream goes on: over the cap.
        return Reason.ZLIB_TOO_LARGE
    if rc == Z_BUF_ERROR or rc == Z_OK:
        # All input used, stream not finished.
        return Reason.ZLIB_TRUNCATED
    return Reason.ZLIB_DATA


def inflate_bounded(data: bytes) -> bytes | int:
    """Python-level entry for tests: the inflated bytes, or the failing Reason number."""
    cdef const unsigned char* p = data
    cdef unsigned char out[INFLATE_BUFFER]
    cdef Py_ssize_t out_len = 0
    cdef Reason reason = zlib_inflate_bounded(p, len(data), out, &out_len)
    if reason != Reason.OK:
        return <int>reason
    return out[:out_len]
