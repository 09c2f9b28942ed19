"""
Reading a small file only if it needs no disk I/O, so that the reactor
thread can serve a message the kernel already has in memory without a
thread hop (a hop costs more than the read: the thread pool's hand-offs and
GIL contention, about 100 microseconds under load).

Two Linux system calls make this provable rather than hopeful:

 - C{openat2(2)} with C{RESOLVE_CACHED} (Linux 5.12) opens the file only
   if every path component is in the kernel's lookup cache, else fails with
   C{EAGAIN} instead of reading directories or inodes from disk;
 - C{preadv2(2)} with C{RWF_NOWAIT} (Linux 4.14) returns only data in the
   page cache, else C{EAGAIN}.

C{fstat} on an open descriptor does no I/O.  Closing a read-only
descriptor does none either -- unless the file was unlinked meanwhile and
this is its last reference, when the kernel frees its blocks: such a
descriptor is handed to a thread to close (L{readNowait}'s C{closeLater}).

Anywhere this cannot be done (another OS, an older kernel, seccomp), or
whenever the kernel says it would wait, L{readNowait} returns L{None} and
the caller does the read in a thread as before.
"""

import ctypes
import errno
import os
import sys

_RESOLVE_CACHED = 0x20
_AT_FDCWD = -100
# openat2 has the same number on every Linux architecture (424 and above
# are shared).
_SYS_OPENAT2 = 437


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _setUp():
    if not sys.platform.startswith("linux") or not hasattr(os, "preadv"):
        return None
    if not hasattr(os, "RWF_NOWAIT"):
        return None
    try:
        # PyDLL: the call keeps the GIL; it never blocks (RESOLVE_CACHED).
        libc = ctypes.PyDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [
        ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t,
    ]
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_CACHED)
    pointer = ctypes.addressof(how)
    size = ctypes.sizeof(how)

    def openCached(path):
        fd = syscall(_SYS_OPENAT2, _AT_FDCWD, path, pointer, size)
        if fd < 0:
            return None, ctypes.get_errno()
        return fd, 0

    # Probe once: a kernel without openat2 (ENOSYS) or a sandbox that
    # forbids it (EPERM) makes every call a waste.
    fd, err = openCached(b"/")
    if fd is None:
        if err in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            return None
    else:
        os.close(fd)
    # keep "how" alive with the closure
    openCached.how = how
    return openCached


_openCached = _setUp()
available = _openCached is not None


def readNowait(path, size, closeLater):
    """
    I{not blocking}: the whole content of the file at C{path} if it is
    C{size} bytes and the kernel can give it without any disk I/O.

    @param path: a L{str} path.
    @param size: the size the caller expects.
    @param closeLater: C{f(fd)} closing a descriptor off this thread (used
        for a file unlinked while it was open).
    @return: L{bytes}, or L{None} (read it in a thread then).
    """
    if _openCached is None:
        return None
    fd, err = _openCached(os.fsencode(path))
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if st.st_nlink == 0:
            # Unlinked: the last close frees its blocks, which is I/O.
            fd, doomed = -1, fd
            closeLater(doomed)
            return None
        if st.st_size != size:
            return None
        buffer = bytearray(size + 1)
        try:
            n = os.preadv(fd, [buffer], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError:
            return None
        if n != size:
            # Short: only part of it is cached (or it changed).
            return None
        return bytes(memoryview(buffer)[:size])
    finally:
        if fd >= 0:
            os.close(fd)
