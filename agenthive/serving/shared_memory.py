"""The same-host fast path: large arrays travel through POSIX shared memory, not the socket.

Two 224x224 RGB images are 300 kB; over loopback TCP that is two kernel copies and a few
hundred microseconds. When client and server share a machine, the client writes such arrays
into a shared-memory segment it owns and sends only ``[segment, size, offset, dtype, shape]``; the
server reads them in place through a read-only mapping: one copy in all. Nobody has to
configure this: at the handshake the client writes a random token into its segment and the
server reports whether it read the same token back (a different host, container or
``/dev/shm`` reads nothing).

The client rewrites its segment only after the reply to the previous request has come
back, so the arrays a policy receives stay intact while it acts (policies copy what they
keep, as for any request). A client whose request timed out moves to a fresh segment, so a
server still working on that request never sees its arrays change.

Who may use it: a client running under the same user (uid) as the server. The server opens
only segments named ``agenthive_<hex>``, only read-only, only for requests that arrive from a
loopback address, and only when the name is a regular file of ``/dev/shm`` (not a FIFO, a
device or a symbolic link: the open does not block and does not follow links), with one link,
owned by the server's own uid and exactly as large as the request says. A peer of the same
uid could read the server's files and signal its process anyway, so nothing more is given away;
a peer of another uid cannot make the server read anything it names.

The server keeps a segment mapped while its client uses it and unmaps it when the client
unlinks it (``close()``, a larger segment, or the client's process ending), when nobody read
it for ``idle_s``, or when more than ``max_bytes`` are mapped (least recently read first).

Example:
    >>> import numpy as np
    >>> writer = SharedMemoryWriter()
    >>> name, size, offset = writer.put(np.arange(4, dtype=np.uint8), message_start=True)
    >>> bytes(SharedMemoryReader().view(name, size, offset, 4))
    b'\\x00\\x01\\x02\\x03'
    >>> writer.close()
"""
import collections
import errno
import mmap
import os
import re
import secrets
import stat
import time
import weakref
from multiprocessing import shared_memory

import numpy as np

# arrays at least this large take the fast path; smaller ones are cheaper inline
MIN_BYTES = 32 * 1024
_SHM_DIR = "/dev/shm"
_NAME = re.compile(r"agenthive_[0-9a-f]{16,64}")
_ALIGN = 64


def available():
    """Whether this machine has POSIX shared memory at ``/dev/shm`` (Linux)."""
    return os.path.isdir(_SHM_DIR)


class SharedMemoryWriter:
    """A client's segment: each message's large arrays are written one after another.

    The client waits for each reply before it sends the next request, so one segment,
    overwritten per message, is enough. A message that does not fit gets a new, larger
    segment; the old one is unlinked when the next message starts (the server's mapping of
    it stays valid). Segments are unlinked on ``close()`` or when the writer is collected.
    """

    def __init__(self, size=1 << 20):
        self.token = secrets.token_bytes(16)
        self._segments = []  # the current segment last; older ones are unlinked at the next message
        self._release = weakref.finalize(self, _unlink_all, self._segments)
        self._allocate(size)

    @property
    def name(self):
        return self._segments[-1].name

    @property
    def size(self):
        """Bytes in the current segment: requests name it with its size, which the server checks."""
        return self._segments[-1].size

    def _allocate(self, size):
        segment = shared_memory.SharedMemory(name=f"agenthive_{secrets.token_hex(16)}", create=True, size=size)
        segment.buf[: len(self.token)] = self.token  # read back by the server at the handshake
        self._segments.append(segment)
        self._offset = _ALIGN

    def put(self, array, message_start):
        """Copy ``array`` into the segment and return ``(segment name, segment size, offset)``."""
        if message_start:
            self._offset = _ALIGN
            _unlink_all(self._segments[:-1])
            del self._segments[:-1]
        segment = self._segments[-1]
        if self._offset + array.nbytes > segment.size:
            self._allocate(max(2 * segment.size, 2 * (self._offset + array.nbytes)))
            segment = self._segments[-1]
        offset = self._offset
        segment.buf[offset : offset + array.nbytes] = memoryview(np.ascontiguousarray(array)).cast("B")
        self._offset = offset + (array.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        return segment.name, segment.size, offset

    def renew(self):
        """Write the next messages to a fresh segment (after a request timed out)."""
        self._allocate(self._segments[-1].size)

    def close(self):
        self._release()


def _unlink_all(segments):
    for segment in segments:
        segment.close()
        segment.unlink()
    segments.clear()


class _Mapping:
    __slots__ = ("mmap", "inode", "last_read")

    def __init__(self, mapping, inode, now):
        self.mmap, self.inode, self.last_read = mapping, inode, now


class SharedMemoryReader:
    """The server's read-only mappings of client segments.

    Args:
        max_bytes: most bytes mapped at once; the least recently read segments are unmapped
            beyond it, and a larger segment is refused.
        max_segments: most segments mapped at once.
        idle_s: a segment nobody read for this long is unmapped by ``sweep``.
    """

    def __init__(self, *, max_bytes=256 << 20, max_segments=256, idle_s=60.0):
        self.max_bytes, self.max_segments, self.idle_s = max_bytes, max_segments, idle_s
        self._maps = collections.OrderedDict()  # name -> _Mapping, least recently read first
        self.mapped_bytes = 0

    def view(self, name, size, offset, nbytes):
        """A read-only memoryview of ``nbytes`` at ``offset`` in segment ``name`` of ``size`` bytes.

        Raises:
            ValueError: the name is not an agenthive segment, it cannot be opened, it is not a
                regular file of this server's uid with one link and ``size`` bytes, or the range
                lies outside it.
        """
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ValueError(f"shared-memory segment {name!r} is not an agenthive segment name (agenthive_<hex>)")
        if not (type(size) is int and 0 < size <= self.max_bytes):
            raise ValueError(f"shared-memory segment {name!r}: a segment of {size!r} bytes: this server maps at most {self.max_bytes}")
        mapping = self._maps.get(name)
        if mapping is None:
            mapping = self._map(name, size)
        elif len(mapping.mmap) != size:
            raise ValueError(f"shared-memory segment {name!r} has {len(mapping.mmap)} bytes; the request says {size}")
        self._maps.move_to_end(name)
        mapping.last_read = time.monotonic()
        if not (type(offset) is int and type(nbytes) is int and 0 <= offset and 0 <= nbytes and offset + nbytes <= size):
            raise ValueError(f"range [{offset!r}, +{nbytes!r}) lies outside segment {name!r} of {size} bytes")
        return memoryview(mapping.mmap)[offset : offset + nbytes]

    def _map(self, name, size):
        path = os.path.join(_SHM_DIR, name)
        try:  # O_NONBLOCK: a FIFO must not block the server; O_NOFOLLOW: a symbolic link is refused
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            why = "is a symbolic link" if err.errno == errno.ELOOP else f"cannot be opened on this host: {err.strerror}"
            raise ValueError(f"shared-memory segment {name!r} {why}") from None
        try:
            info = os.fstat(fd)
            _check_segment(name, info, size)
            mapping = _Mapping(mmap.mmap(fd, size, prot=mmap.PROT_READ), (info.st_dev, info.st_ino), time.monotonic())
        finally:
            os.close(fd)
        self._maps[name] = mapping
        self.mapped_bytes += size
        while len(self._maps) > 1 and (self.mapped_bytes > self.max_bytes or len(self._maps) > self.max_segments):
            self._unmap(next(iter(self._maps)))
        return mapping

    def _unmap(self, name):
        self.mapped_bytes -= len(self._maps.pop(name).mmap)  # unmapped once no array views it

    def sweep(self, now):
        """Unmap the segments their clients unlinked and those nobody read for ``idle_s``."""
        for name, mapping in list(self._maps.items()):
            if now - mapping.last_read > self.idle_s or not _still_linked(name, mapping.inode):
                self._unmap(name)

    def close(self):
        self._maps.clear()
        self.mapped_bytes = 0


def _check_segment(name, info, size):
    """Refuse anything but a segment a ``SharedMemoryWriter`` of this server's user made."""
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"shared-memory segment {name!r} is not a regular file (mode {stat.filemode(info.st_mode)}): expected a segment made by an agenthive client")
    if info.st_nlink != 1:
        raise ValueError(f"shared-memory segment {name!r} has {info.st_nlink} links: expected a segment made by an agenthive client (one link)")
    if info.st_uid != os.geteuid():
        raise ValueError(f"shared-memory segment {name!r} belongs to uid {info.st_uid}; this server reads only segments of uid {os.geteuid()} (its own user)")
    if info.st_size != size:
        raise ValueError(f"shared-memory segment {name!r} has {info.st_size} bytes; the request says {size}")


def _still_linked(name, inode):
    try:
        info = os.stat(os.path.join(_SHM_DIR, name), follow_symlinks=False)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == inode
