"""Reading HDF5 files that may be damaged or hostile, for the readers of this package.

h5py reports a damaged file through whatever exception the failing call happens to raise
(OSError, RuntimeError, KeyError, ValueError, TypeError, SystemError), and a few kinds of
damage do worse: a global heap collection holding a free-space object of size 0 makes the
HDF5 library loop forever, and a flipped length of a variable-length sequence makes it
allocate and clear up to 16 GiB before it notices. :class:`Hdf5File` opens a file only after
checking for the first, offers :meth:`Hdf5File.raw_records` to read records and
sequence lengths from the raw storage before HDF5 allocates anything, bounds every array read by what the file
can hold, refuses datasets whose values live in other files, and turns whatever the library
raises inside each step into :class:`~raw_data.errors.CorruptFileError` naming the file and the step.

A dataset can keep its values outside the file: HDF5 external raw storage names flat files to
read them from, and a virtual dataset maps datasets of other HDF5 files. The library opens those
by the path the file names, so reading such a dataset reads a file the caller never gave (another
patient's record, on a hospital node). :meth:`Hdf5File.child` refuses them before any value is read.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from raw_data.errors import CorruptFileError, RawDataError

__all__ = ["Hdf5File", "reading"]

# What h5py, numpy and ismrmrd raise on damaged input (a corrupt B-tree is a KeyError or a
# RuntimeError, a bad datatype message a ValueError or TypeError, a bad size OverflowError).
_LIBRARY_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, SystemError, OverflowError, IndexError)
_SIZE_T = 1 << 64  # HDF5 computes heap offsets in size_t
_MAX_HEAP_OBJECTS = 1 << 16  # heap object indices are 16-bit
# Deflate cannot expand more than about 1032:1; a larger claimed size is a corrupt header.
_MAX_DEFLATE_RATIO = 1100
_SLACK_BYTES = 1 << 20
_DEFLATE, _SHUFFLE, _FLETCHER32 = h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32


@contextlib.contextmanager
def reading(where: str, what: str) -> Iterator[None]:
    """Turn an exception of the HDF5/ismrmrd layer inside the block into CorruptFileError.

    Keep the block to third-party calls: our own errors (:class:`RawDataError`) pass
    through untouched, and an exhausted memory becomes a CorruptFileError too, since on a
    damaged file it means a size field is wrong.
    """
    try:
        yield
    except RawDataError:
        raise
    except MemoryError as exc:
        raise CorruptFileError(
            f"reading {what} needs more memory than this machine has; a size field in the "
            "file is corrupt (or the file is too large for this machine)",
            where,
        ) from exc
    except _LIBRARY_ERRORS as exc:
        raise CorruptFileError(
            f"{what} cannot be read ({type(exc).__name__}: {exc}); the file is truncated or corrupt, copy it again",
            where,
        ) from exc


def _lengths_size(mm: mmap.mmap) -> int:
    """Return the superblock's "size of lengths" (8 in files of every common writer)."""
    for base in (0, 512, 1024, 2048):
        if mm[base : base + 8] == b"\x89HDF\r\n\x1a\n" and len(mm) > base + 14:
            version = mm[base + 8]
            size = mm[base + 14] if version < 2 else mm[base + 10]
            return size if size in (2, 4, 8, 16) else 8
    return 8


def _align8(n: int) -> int:
    return ((n + 7) % _SIZE_T) & ~7


def _check_collection(mm: mmap.mmap, start: int, lengths: int, where: str) -> None:
    """Raise if HDF5 would loop forever decoding the global heap collection at ``start``.

    Mirrors the object walk of the library's collection decoder: a collection it would
    refuse (bad version, too small, past the end of the file, an object overrunning it) is
    left to it; only an object whose stored size makes the walk stand still is refused here.
    """
    header = 8 + lengths
    if start + header > len(mm) or mm[start + 4] != 1:
        return
    size = int.from_bytes(mm[start + 8 : start + 8 + lengths], "little")
    if size < 4096 or start + size > len(mm):
        return
    obj_header = _align8(8 + lengths)
    p, objects = _align8(header), 0
    while p < size and p + obj_header <= size:
        index = int.from_bytes(mm[start + p : start + p + 2], "little")
        stored = int.from_bytes(mm[start + p + 8 : start + p + 8 + lengths], "little")
        need = (obj_header + _align8(stored)) % _SIZE_T if index > 0 else stored % _SIZE_T
        objects += 1
        if need == 0 or objects > _MAX_HEAP_OBJECTS + 1:
            raise CorruptFileError(
                f"the global heap collection at byte {start} is corrupt (object {index} at byte "
                f"{start + p} has stored size {stored}, which the HDF5 library cannot step over); "
                "the file is damaged, copy it again",
                where,
            )
        if need > size - p:
            return
        p += need


def check_global_heaps(path: Path, where: str) -> None:
    """Refuse a file holding a global heap collection that would hang the HDF5 library."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            lengths = _lengths_size(mm)
            pos = mm.find(b"GCOL")
            while pos >= 0:
                _check_collection(mm, pos, lengths, where)
                pos = mm.find(b"GCOL", pos + 4)


def _type_mismatch(tid: Any, dtype: np.dtype[Any], name: str) -> str | None:
    """Return how the numpy type h5py derived for a stored type disagrees with it, or None.

    A damaged datatype message (a float of 4 bytes claiming 64 bits of precision) makes
    h5py derive a wider numpy type; inside a compound its fields then overlap, and reading
    into it corrupts the heap (seen as "double free or corruption", a crash, not an error).
    """
    kind = tid.get_class()
    if kind == h5py.h5t.COMPOUND:
        fields = dtype.fields
        if fields is None or len(fields) != tid.get_nmembers():
            return f"{name} has {tid.get_nmembers()} stored fields but {len(dtype.names or ())} as read"
        spans = []
        for i in range(tid.get_nmembers()):
            member = tid.get_member_name(i).decode(errors="replace")
            if member not in fields:
                return f"field {member!r} of {name} is missing as read"
            sub, offset = fields[member][:2]
            problem = _type_mismatch(tid.get_member_type(i), sub, f"{name}.{member}")
            if problem is not None:
                return problem
            spans.append((offset, offset + sub.itemsize, member))
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                return f"fields {first!r} and {second!r} of {name} overlap"
        if spans and spans[-1][1] > dtype.itemsize:
            return f"field {spans[-1][2]!r} of {name} runs past its element"
        return None
    if kind in (h5py.h5t.VLEN, h5py.h5t.REFERENCE) or dtype.kind == "O":
        return None
    if dtype.itemsize != tid.get_size():
        return f"{name} is stored in {tid.get_size()} bytes but would be read as {dtype} ({dtype.itemsize} bytes)"
    return None


def _stored_size(tid: Any, address_size: int) -> int:
    """Return how many bytes one element of ``tid`` takes in the file (not in memory).

    HDF5 hands out a dataset's type in its memory form: a variable-length sequence as a
    ``(length, pointer)`` pair and a variable-length string as a pointer, with a compound's
    later members moved to fit. In the file each is a 4-byte length and a global heap id
    (an address and a 4-byte index), so a compound holding variable-length strings is longer
    on disk than in memory.
    """
    kind = tid.get_class()
    if kind == h5py.h5t.VLEN or (kind == h5py.h5t.STRING and tid.is_variable_str()):
        return 4 + address_size + 4
    if kind == h5py.h5t.COMPOUND:
        return int(tid.get_size()) + sum(
            _stored_size(m, address_size) - int(m.get_size())
            for m in (tid.get_member_type(i) for i in range(tid.get_nmembers()))
        )
    if kind == h5py.h5t.ARRAY:
        base = tid.get_super()
        count = int(np.prod(tid.get_array_dims()))
        return int(tid.get_size()) + count * (_stored_size(base, address_size) - int(base.get_size()))
    return int(tid.get_size())


def _stored_offset(tid: Any, index: int, address_size: int) -> int:
    """Return where member ``index`` of compound ``tid`` starts in the file's element bytes."""
    offset = int(tid.get_member_offset(index))
    shift = 0
    for i in range(tid.get_nmembers()):
        if int(tid.get_member_offset(i)) < offset:
            member = tid.get_member_type(i)
            shift += _stored_size(member, address_size) - int(member.get_size())
    return offset + shift


class Hdf5File:
    """A read-only HDF5 file whose every access raises only this package's errors.

    Use as a context manager; it opens the file after :func:`check_global_heaps`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.size = path.stat().st_size
        self._file: h5py.File | None = None

    def __enter__(self) -> Hdf5File:
        check_global_heaps(self.path, self.where)
        try:
            self._file = h5py.File(self.path, "r")
        except MemoryError as exc:
            raise CorruptFileError("cannot be read as HDF5 (out of memory); the file is corrupt", self.where) from exc
        except _LIBRARY_ERRORS as exc:
            raise CorruptFileError(
                f"cannot be read as HDF5 ({exc}); the file is truncated or corrupt, copy it again",
                self.where,
            ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            # Closing a damaged file can fail too; the first error (if any) must win.
            with contextlib.suppress(*_LIBRARY_ERRORS):
                self._file.close()
            self._file = None

    @property
    def root(self) -> h5py.File:
        """The open h5py file."""
        if self._file is None:
            raise RuntimeError("Hdf5File used outside its with-block")
        return self._file

    def child(self, parent: Any, name: str) -> Any:
        """Return ``parent[name]`` (a group or dataset), or None if there is no such link.

        Raises:
            CorruptFileError: the object cannot be read, or it is a dataset whose values are
                stored in other files (see :meth:`check_storage`).
        """
        with reading(self.where, f"{parent.name.rstrip('/')}/{name}"):
            if name not in parent:
                return None
            obj = parent[name]
        if isinstance(obj, h5py.Dataset):
            self.check_storage(obj)
        return obj

    def check_storage(self, dset: Any) -> None:
        """Raise CorruptFileError if ``dset`` keeps its values outside this file.

        Checked in the dataset's creation properties, without reading a value: a virtual
        layout (values mapped from other HDF5 files) or any external raw storage file. The
        message never repeats the other files' names: they are the file's content, and may
        themselves name a patient.
        """
        with reading(self.where, f"the storage properties of {dset.name}"):
            plist = dset.id.get_create_plist()
            virtual = plist.get_layout() == h5py.h5d.VIRTUAL
            external = int(plist.get_external_count())
        if virtual or external:
            how = (
                "it is a virtual dataset, whose values are mapped from datasets of other HDF5 files"
                if virtual
                else f"it uses HDF5 external raw storage, whose values are read from {external} other file(s)"
            )
            raise CorruptFileError(
                f"dataset {dset.name} stores its data outside the file ({how}); this reader opens no file "
                "but the one it is given: write the values into the file itself and read it again",
                self.where,
            )

    def names(self, group: Any) -> list[str]:
        """Return the link names in ``group``."""
        with reading(self.where, f"the members of {group.name}"):
            return [str(k) for k in group]

    def attr(self, obj: Any, key: str) -> Any:
        """Return attribute ``key`` of ``obj`` (bytes decoded as UTF-8), or None if absent."""
        with reading(self.where, f"attribute {key!r} of {obj.name}"):
            if key not in obj.attrs:
                return None
            value = obj.attrs[key]
            return value.decode() if isinstance(value, bytes) else value

    def attrs(self, obj: Any) -> dict[str, Any]:
        """Return every attribute of ``obj`` (bytes decoded as UTF-8)."""
        with reading(self.where, f"the attributes of {obj.name}"):
            return {str(k): (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}

    def describe(self, dset: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """Return a dataset's ``(shape, dtype)``."""
        with reading(self.where, f"the shape and type of {dset.name}"):
            return tuple(int(n) for n in dset.shape), dset.dtype

    def check_type(self, dset: Any) -> None:
        """Raise CorruptFileError if the dataset's stored type and its numpy type disagree."""
        with reading(self.where, f"the type of {dset.name}"):
            problem = _type_mismatch(dset.id.get_type(), dset.dtype, dset.name)
        if problem is not None:
            raise CorruptFileError(f"the datatype of {dset.name} is damaged: {problem}", self.where)

    def _address_size(self) -> int:
        with reading(self.where, "the file's address size"):
            return int(self.root.id.get_create_plist().get_sizes()[0])

    def _filters(self, dset: Any) -> list[int]:
        with reading(self.where, f"the storage properties of {dset.name}"):
            plist = dset.id.get_create_plist()
            return [int(plist.get_filter(i)[0]) for i in range(plist.get_nfilters())]

    def _max_bytes(self, dset: Any) -> int:
        ratio = _MAX_DEFLATE_RATIO if self._filters(dset) else 1
        return ratio * self.size + _SLACK_BYTES

    def read(self, dset: Any, selection: Any = ()) -> npt.NDArray[Any]:
        """Read ``dset[selection]`` after checking the file can hold that much data.

        A dataset's extent is a number in its header: a flipped bit can make a small file
        claim terabytes. Uncompressed data must fit in the file; deflated data within the
        best ratio deflate achieves.
        """
        self.check_storage(dset)
        shape, dtype = self.describe(dset)
        self.check_type(dset)
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        limit = self._max_bytes(dset)
        if needed > limit:
            raise CorruptFileError(
                f"{dset.name} claims shape {shape} of {dtype} ({needed} bytes), more than a "
                f"{self.size}-byte file can hold; its header is corrupt",
                self.where,
            )
        with reading(self.where, f"dataset {dset.name}"):
            return np.asarray(dset[selection])

    def raw_records(self, dset: Any) -> npt.NDArray[np.uint8] | None:
        """Return the stored bytes of a one-dimensional dataset, ``(elements, element size)``.

        HDF5 allocates (and clears) every variable-length sequence at the length stored in
        the file before it checks that length against the heap, even when only other fields
        are requested, so a flipped length costs gigabytes. Reading the records' bytes
        directly lets a reader check those lengths first (see :meth:`member`).

        Returns:
            uint8 ``(elements, element size)``, or None if the storage is of a kind this
            function does not decode (compact layout, or a filter other than deflate,
            shuffle and fletcher32).

        Raises:
            CorruptFileError: the storage lies outside the file, does not cover every
                element, or does not decompress.
        """
        self.check_storage(dset)
        shape, _ = self.describe(dset)
        with reading(self.where, f"the storage layout of {dset.name}"):
            size = _stored_size(dset.id.get_type(), self._address_size())
            layout = dset.id.get_create_plist().get_layout()
        count = shape[0] if len(shape) == 1 else 0
        if count * size > self._max_bytes(dset):
            raise CorruptFileError(
                f"{dset.name} claims {count} elements of {size} bytes, more than a {self.size}-byte file can hold",
                self.where,
            )
        if layout == h5py.h5d.CONTIGUOUS:
            with reading(self.where, f"the storage address of {dset.name}"):
                start = dset.id.get_offset()
            raw = self._bytes(dset, start, count * size) if count else b""
        elif layout == h5py.h5d.CHUNKED:
            chunked = self._chunked_bytes(dset, count, size)
            if chunked is None:
                return None
            raw = chunked
        else:
            return None
        return np.frombuffer(raw, dtype=np.uint8).reshape(count, size)

    def member(self, dset: Any, records: npt.NDArray[np.uint8], name: str | None) -> npt.NDArray[Any]:
        """Decode one field of :meth:`raw_records` without HDF5.

        A fixed-size field comes back as its stored numpy type; a variable-length field (or
        the whole element when ``name`` is None) as the uint32 lengths stored for it.
        """
        self.check_type(dset)
        with reading(self.where, f"the type of {dset.name}"):
            ftype = dset.id.get_type()
            if name is None:
                offset, mtype = 0, ftype
            else:
                index = ftype.get_member_index(name.encode())
                offset = _stored_offset(ftype, index, self._address_size())
                mtype = ftype.get_member_type(index)
            variable = mtype.get_class() == h5py.h5t.VLEN or (
                mtype.get_class() == h5py.h5t.STRING and mtype.is_variable_str()
            )
            dtype = np.dtype("<u4") if variable else mtype.dtype
            width = 4 if variable else mtype.get_size()
        if dtype.itemsize != width or offset + width > records.shape[1]:
            raise CorruptFileError(f"field {name!r} of {dset.name} has an inconsistent stored layout", self.where)
        field: npt.NDArray[Any] = records[:, offset : offset + width].copy().view(dtype).reshape(records.shape[0])
        return field

    def _bytes(self, dset: Any, start: int | None, length: int) -> bytes:
        if start is None or start < 0 or start + length > self.size:
            raise CorruptFileError(
                f"the storage of {dset.name} ({length} bytes at byte {start}) lies outside the "
                f"{self.size}-byte file; the file is truncated or corrupt",
                self.where,
            )
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def _chunked_bytes(self, dset: Any, count: int, size: int) -> bytes | None:
        filters = self._filters(dset)
        if any(f not in (_DEFLATE, _SHUFFLE, _FLETCHER32) for f in filters):
            return None
        with reading(self.where, f"the chunk index of {dset.name}"):
            chunk = int(dset.id.get_create_plist().get_chunk()[0])
            stored: list[Any] = []
            dset.id.chunk_iter(stored.append)
        out = bytearray(count * size)
        covered = np.zeros(count, dtype=bool)
        for info in stored:
            first = int(info.chunk_offset[0])
            if first >= count:
                continue
            data = self._bytes(dset, int(info.byte_offset), int(info.size))
            for n, code in reversed(list(enumerate(filters))):
                if info.filter_mask & (1 << n):
                    continue  # this filter was skipped for this chunk
                data = self._unfilter(dset, code, data, chunk * size, size)
            if len(data) != chunk * size:
                raise CorruptFileError(
                    f"a chunk of {dset.name} holds {len(data)} bytes, expected {chunk * size}", self.where
                )
            n = min(chunk, count - first)
            out[first * size : (first + n) * size] = data[: n * size]
            covered[first : first + n] = True
        if not covered.all():
            missing = int(np.argmin(covered))
            raise CorruptFileError(
                f"{dset.name} declares {count} elements but element {missing} is not stored; "
                "the file is truncated or corrupt",
                self.where,
            )
        return bytes(out)

    def _unfilter(self, dset: Any, code: int, data: bytes, expected: int, size: int) -> bytes:
        if code == _FLETCHER32:
            return data[:-4]
        if code == _DEFLATE:
            inflater = zlib.decompressobj()
            try:
                plain = inflater.decompress(data, expected + 1)
            except zlib.error as exc:
                raise CorruptFileError(f"a chunk of {dset.name} does not decompress ({exc})", self.where) from exc
            return plain
        # Shuffle stores byte 0 of every element, then byte 1, ...: transpose back.
        if len(data) % size:
            raise CorruptFileError(f"a shuffled chunk of {dset.name} has a partial element", self.where)
        return np.frombuffer(data, dtype=np.uint8).reshape(size, -1).T.tobytes()
