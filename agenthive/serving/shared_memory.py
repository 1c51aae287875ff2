"""The same-host fast path: large arrays travel through POSIX shared memory, not the socket.

Two 224x224 RGB images are 300 kB; over loopback TCP that is two kernel copies and a few
hundred microseconds. When client and server share a machine, the client writes such arrays
into a shared-memory segment it owns and sends only ``[segment, offset, dtype, shape]``; the
server reads them in place through a read-only mapping: one copy in all. Nobody has to
configure this: at the handshake the client writes a random token into its segment and the
server reports whether it read the same token back (a different host, container or
``/dev/shm`` reads nothing).

The client rewrites its segment only after the reply to the previous request has come
back, so the arrays a policy receives stay intact while it acts (policies copy what they
keep, as for any request). A client whose request timed out moves to a fresh segment, so a
server still working on that request never sees its arrays change.

The server opens only segments named ``agenthive_<hex>``, only read-only, and only for
requests that arrive from a loopback address.

Example:
    >>> import numpy as np
    >>> writer = SharedMemoryWriter()
    >>> name, offset = writer.put(np.arange(4, dtype=np.uint8), message_start=True)
    >>> bytes(SharedMemoryReader().view(name, offset, 4))
    b'\\x00\\x01\\x02\\x03'
    >>> writer.close()
"""
import collections
import mmap
import os
import re
import secrets
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

    def _allocate(self, size):
        segment = shared_memory.SharedMemory(name=f"agenthive_{secrets.token_hex(16)}", create=True, size=size)
        segment.buf[: len(self.token)] = self.token  # read back by the server at the handshake
        self._segments.append(segment)
        self._offset = _ALIGN

    def put(self, array, message_start):
        """Copy ``array`` into the segment and return ``(segment name, offset)``."""
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
        return segment.name, offset

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


class SharedMemoryReader:
    """The server's read-only mappings of client segments, the most recent ``capacity`` kept."""

    def __init__(self, capacity=256):
        self._maps = collections.OrderedDict()
        self._capacity = capacity

    def view(self, name, offset, nbytes):
        """A read-only memoryview of ``nbytes`` at ``offset`` in segment ``name``.

        Raises:
            ValueError: the name is not an agenthive segment, it does not exist, or the
                range lies outside it.
        """
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ValueError(f"shared-memory segment {name!r} is not an agenthive segment name (agenthive_<hex>)")
        mapping = self._maps.get(name)
        if mapping is None:
            try:
                fd = os.open(os.path.join(_SHM_DIR, name), os.O_RDONLY)
            except OSError as err:
                raise ValueError(f"shared-memory segment {name!r} cannot be opened on this host: {err.strerror}") from None
            try:
                mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self._maps[name] = mapping
            if len(self._maps) > self._capacity:
                self._maps.popitem(last=False)  # unmapped once no array views it
        self._maps.move_to_end(name)
        if not (isinstance(offset, int) and isinstance(nbytes, int) and 0 <= offset and 0 <= nbytes and offset + nbytes <= len(mapping)):
            raise ValueError(f"range [{offset!r}, +{nbytes!r}) lies outside segment {name!r} of {len(mapping)} bytes")
        return memoryview(mapping)[offset : offset + nbytes]

    def close(self):
        self._maps.clear()
