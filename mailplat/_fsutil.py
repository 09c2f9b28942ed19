"""
Small durable-file helpers shared by the queue and the store.
"""

import os


def fsyncDirectory(path):
    """
    fsync the directory C{path}, so that entries created or renamed in it
    survive a crash.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writeFileAtomically(path, data, mode=0o600, sync=True):
    """
    Replace C{path} with C{data} (bytes): write a temporary file beside it,
    fsync it, rename it over C{path}, fsync the directory.
    """
    directory = os.path.dirname(path)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsyncDirectory(directory)
