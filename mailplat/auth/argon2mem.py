"""
argon2 verification with the hash's memory taken from a buffer each thread
keeps, instead of C{malloc}.

Why: argon2 needs its whole memory cost (C{m} KiB) for every verification.
Through C{malloc}, glibc serves a block that large with C{mmap} and, when
it is freed, raises its dynamic mmap threshold to the block's size -- and
its heap trim threshold to twice that -- for the whole process.  From then
on memory freed anywhere (a burst of TLS handshakes, say) stays in the
process: with the benchmark's light hashes (C{m} = 8 MiB) an idle IMAP
session looked three times as large as it is.  Freeing the block back to
the kernel each time instead would make every verification fault its C{m}
back in (about +45% CPU for 8 MiB).  So each hashing thread keeps one
anonymous mapping (never C{malloc}) and lends it to argon2 through the
library's C{allocate_cbk}; the retained memory is bounded by the number of
hashing threads (L{mailplat.auth.hashpool}) times the largest C{m} seen, at
most L{MAX_KEPT}.

Hashes whose C{m} is above L{MAX_KEPT} (mailplat's default, 64 MiB), an
encoding this module does not recognise, or a platform where C{cffi}
callbacks are not available, are verified by argon2-cffi as usual: this
only changes where the memory comes from, never the answer (the tests
compare both on many hashes).
"""

import base64
import hmac
import mmap
import threading

try:
    from _argon2_cffi_bindings import ffi, lib
except ImportError:  # pragma: no cover - argon2-cffi always has it today
    ffi = lib = None

# glibc never raises its threshold for blocks above 32 MiB (they are always
# mapped and unmapped), so larger hashes gain nothing from being kept.
MAX_KEPT = 32 * 1024 * 1024

_TYPES = {"argon2id": 2, "argon2i": 1, "argon2d": 0}
_local = threading.local()


def _buffer(size):
    """
    This thread's buffer of at least C{size} bytes (an anonymous mapping).
    """
    held = getattr(_local, "buffer", None)
    if held is None or len(held[0]) < size:
        if held is not None:
            _local.buffer = None
            ffi.release(held[1])
            held[0].close()
        mapping = mmap.mmap(-1, size)
        held = _local.buffer = (mapping, ffi.from_buffer(mapping))
    return held[1]


def _makeCallbacks():
    if ffi is None:
        return None
    try:
        @ffi.callback("int(uint8_t **, size_t)")
        def allocate(memory, size):
            try:
                memory[0] = ffi.cast("uint8_t *", _buffer(size))
            except Exception:
                return -22  # ARGON2_MEMORY_ALLOCATION_ERROR
            return 0

        @ffi.callback("void(uint8_t *, size_t)")
        def free(memory, size):
            # The buffer stays for the next verification; argon2 wipes it
            # itself before calling this (ARGON2_FLAG_CLEAR_MEMORY is on in
            # its default build).
            pass

    except Exception:
        return None
    return allocate, free


_callbacks = _makeCallbacks()


def _b64(text):
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _parse(encoded):
    """
    @return: C{(type, version, m, t, p, salt, digest)} of a PHC-encoded
        argon2 hash, or L{None}.
    """
    parts = encoded.split("$")
    if len(parts) == 6 and parts[2].startswith("v="):
        version = int(parts[2][2:])
        params = parts[3]
    elif len(parts) == 5:
        version = 0x10
        params = parts[2]
    else:
        return None
    if parts[0] != "" or parts[1] not in _TYPES:
        return None
    values = {}
    for pair in params.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not value.isdigit() or key in values:
            return None
        values[key] = int(value)
    if set(values) != {"m", "t", "p"}:
        return None
    return (_TYPES[parts[1]], version, values["m"], values["t"], values["p"],
            _b64(parts[-2]), _b64(parts[-1]))


def verify(encoded, password):
    """
    Verify C{password} (L{str}) against an argon2 hash (C{$argon2id$...}).

    @return: L{True} or L{False}; L{None} when this module does not handle
        the hash (the caller verifies it the usual way).
    """
    if _callbacks is None:
        return None
    try:
        parsed = _parse(encoded)
    except (ValueError, TypeError):
        return None
    if parsed is None:
        return None
    kind, version, m, t, p, salt, digest = parsed
    if m * 1024 > MAX_KEPT or not digest or not salt:
        return None
    secret = password.encode("utf-8")
    out = ffi.new("uint8_t[]", len(digest))
    pwd = ffi.new("uint8_t[]", secret or b"\0")
    saltBuffer = ffi.new("uint8_t[]", salt)
    allocate, free = _callbacks
    context = ffi.new("argon2_context *", {
        "out": out, "outlen": len(digest),
        "pwd": pwd, "pwdlen": len(secret),
        "salt": saltBuffer, "saltlen": len(salt),
        "secret": ffi.NULL, "secretlen": 0,
        "ad": ffi.NULL, "adlen": 0,
        "t_cost": t, "m_cost": m, "lanes": p, "threads": p,
        "version": version,
        "allocate_cbk": allocate, "free_cbk": free,
        "flags": lib.ARGON2_DEFAULT_FLAGS,
    })
    rv = lib.argon2_ctx(context, kind)
    if rv != lib.ARGON2_OK:
        # Parameters argon2 refuses (a damaged hash): let argon2-cffi give
        # its usual answer.
        return None
    return hmac.compare_digest(bytes(ffi.buffer(out, len(digest))), digest)
