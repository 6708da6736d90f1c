"""Reading an untrusted ``.npz`` (a zip of ``.npy`` arrays) within bounds.

A model file is untrusted input. Before any array data is read, the zip's end
record and directory (member count and size, duplicate names, sizes against
the file's, local headers that name their member) and each member's ``.npy``
header (version, length, nesting, dtype, shape against the member's size) are
checked, so that a hostile file (a zip bomb, a header declaring a huge shape,
an object, structured or nested dtype) is refused with little memory used.
Members are inflated as they are read, never past their declared size, and
their CRC-32 is checked. Every refusal is a :class:`ModelFileError` naming the
file and what is wrong.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

__all__ = [
  "ModelFileError",
  "READ_ERRORS",
  "open_regular",
  "Header",
  "Archive",
]


# Bounds load checks from the zip directory and the .npy headers before it reads
# any array data. Format 1 has at most 17 entries; the rest is room for a newer
# writer's. save stores members as they are (1x); deflate of real parameters
# gains little, so arrays that declare over _MAX_EXPANSION times the file's size
# are a zip bomb, not a model.
_MAX_MEMBERS = 256


_MAX_DIRECTORY_BYTES = _MAX_MEMBERS * 1024


_MAX_EXPANSION = 64


_SLACK_BYTES = 1 << 20


_MAX_HEADER_BYTES = 10_000  # NumPy's own bound on a .npy header.


_MAX_HEADER_NESTING = 8  # A plain array's header nests 2 deep: {...(shape)...}.


_MAX_NDIM = 8


_ARRAY_KINDS = "iufU"  # Numbers and text: all that save writes.


_CHUNK_BYTES = 1 << 20


_END = struct.Struct("<4s4H2LH")  # The zip's end of central directory record.


_END64 = struct.Struct("<4sQ2H2L4Q")  # Its zip64 record, then the locator.


_LOCATOR64 = struct.Struct("<4sLQL")


_LOCAL = struct.Struct("<4s2B4HL2L2H")  # A member's local header.


class ModelFileError(ValueError):
  """A model file that cannot be loaded; the message names the file and why."""


# What a truncated or corrupted archive raises while zipfile and numpy read it.
READ_ERRORS = (
  zipfile.BadZipFile,
  zipfile.LargeZipFile,
  zlib.error,
  struct.error,
  EOFError,
  OSError,
  ValueError,
  KeyError,
  NotImplementedError,
  RuntimeError,  # RecursionError among them.
  OverflowError,
)


def _file_kind(mode: int) -> str:
  kinds = [
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
  ]
  return next((kind for test, kind in kinds if test(mode)), "a special file")


def open_regular(path: str, what: str = "an mfjax model file", error=ModelFileError):
  """``(file, size)``: ``path`` opened for reading if it is a regular file.

  Anything else is refused (``error``, saying the file is not ``what``) before
  it is opened, so that a FIFO cannot block the reader and a device cannot
  feed it endless bytes; O_NONBLOCK covers a file swapped for a FIFO between
  the two looks.
  """
  mode = os.stat(path).st_mode  # A missing file: FileNotFoundError passes through.
  if not stat.S_ISREG(mode):
    raise error(f"{path}: is {_file_kind(mode)}, not a regular file; not {what}.")
  flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
  fd = os.open(path, flags)
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise error(
        f"{path}: is {_file_kind(info.st_mode)}, not a regular file; not {what}."
      )
    return os.fdopen(fd, "rb"), info.st_size
  except BaseException:
    os.close(fd)
    raise


def _check_end_record(path: str, file, size: int) -> int | None:
  """Refuses a zip whose end record declares more members, or a larger central
  directory, than a model file has, before zipfile reads that directory, and
  returns the member count it declares.

  The record is found as zipfile finds it; where there is none, zipfile says so.
  """
  tail = min(size, _END.size + 0xFFFF)
  file.seek(size - tail)
  data = file.read(tail)
  at = len(data) - _END.size
  if not (at >= 0 and data[at : at + 4] == b"PK\x05\x06" and data[-2:] == b"\0\0"):
    at = data.rfind(b"PK\x05\x06")
  if at < 0 or len(data) - at < _END.size:
    return None
  record = _END.unpack_from(data, at)
  count, directory = record[4], record[5]
  start = size - tail + at - _LOCATOR64.size - _END64.size
  if (count == 0xFFFF or directory == 0xFFFFFFFF) and start >= 0:
    file.seek(start)
    zip64 = file.read(_END64.size + _LOCATOR64.size)
    if zip64[:4] == b"PK\x06\x06" and zip64[_END64.size :][:4] == b"PK\x06\x07":
      count, directory = _END64.unpack_from(zip64)[7:9]
  if count > _MAX_MEMBERS:
    raise ModelFileError(
      f"{path}: its zip directory declares {count} members; a model file has at "
      f"most {_MAX_MEMBERS}, and it is not read."
    )
  if directory > _MAX_DIRECTORY_BYTES:
    raise ModelFileError(
      f"{path}: its zip directory declares {directory} bytes; a model file's is at "
      f"most {_MAX_DIRECTORY_BYTES}, and it is not read."
    )
  return count


def _members(path: str, file, size: int, bound: int) -> dict[str, zipfile.ZipInfo]:
  """The archive's members by entry name, checked from its central directory."""
  count = _check_end_record(path, file, size)
  with zipfile.ZipFile(file) as archive:  # Reads the central directory only.
    infos = archive.infolist()
  if len(infos) > _MAX_MEMBERS:
    raise ModelFileError(
      f"{path}: holds {len(infos)} members; a model file has at most "
      f"{_MAX_MEMBERS}, and it is not read."
    )
  if count is not None and count != len(infos):  # Entries hidden in a comment.
    raise ModelFileError(
      f"{path}: is truncated or corrupted (its zip directory lists {len(infos)} "
      f"members; its end record says {count})."
    )
  members, declared = {}, 0
  for info in infos:
    key = info.filename.removesuffix(".npy")
    if key in members:
      raise ModelFileError(
        f"{path}: holds two members named {key!r}; it is corrupted or was not "
        "written by mfjax.save."
      )
    if not 0 <= info.header_offset <= info.header_offset + info.compress_size <= size:
      raise ModelFileError(
        f"{path}: is truncated or corrupted (member {info.filename!r} declares "
        f"{info.compress_size} bytes at offset {info.header_offset} of a "
        f"{size}-byte file)."
      )
    stored = info.compress_type == zipfile.ZIP_STORED
    if stored and info.compress_size != info.file_size:
      raise ModelFileError(
        f"{path}: is truncated or corrupted (member {info.filename!r} is stored, "
        f"{info.compress_size} bytes, but declares {info.file_size})."
      )
    _data_offset(path, file, info, size)  # A damaged name must not hide an entry.
    members[key] = info
    declared += info.file_size
  if declared > bound:
    raise ModelFileError(
      f"{path}: its members declare {declared} bytes of data, over "
      f"{_MAX_EXPANSION} times the file's {size} bytes; it is refused unread (a "
      "zip bomb, or corrupted)."
    )
  return members


def _data_offset(path: str, file, info: zipfile.ZipInfo, size: int) -> int:
  """Where a member's data starts, after its local header, which must be there
  and name it as the central directory does."""

  def corrupted(why):
    return ModelFileError(
      f"{path}: is truncated or corrupted (member {info.filename!r} {why})."
    )

  file.seek(info.header_offset)
  local = file.read(_LOCAL.size)
  if len(local) < _LOCAL.size or local[:4] != b"PK\x03\x04":
    raise corrupted("has no local header")
  name_size, extra_size = _LOCAL.unpack(local)[-2:]
  encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
  if file.read(name_size) != info.orig_filename.encode(encoding):
    raise corrupted("has another name in its local header")
  offset = info.header_offset + _LOCAL.size + name_size + extra_size
  if offset + info.compress_size > size:
    raise corrupted("ends past the end of the file")
  return offset


class _Member:
  """One member's bytes as a file: inflated as they are read, and never more than
  the size its central directory entry declares."""

  def __init__(self, path: str, key: str, file, info: zipfile.ZipInfo, size: int):
    self.path, self.key, self.file, self.info = path, key, file, info
    self.where = f"{path}: entry {key!r}"
    self.position = _data_offset(path, file, info, size)
    if info.flag_bits & 0x1:
      raise ModelFileError(f"{self.where} is encrypted; model files never are.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
      raise ModelFileError(
        f"{self.where} uses zip compression method {info.compress_type}; mfjax reads "
        "stored and deflated members."
      )
    self.raw_left, self.left, self.crc = info.compress_size, info.file_size, 0
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None

  def corrupted(self, why: str) -> ModelFileError:
    return ModelFileError(
      f"{self.path}: is truncated or corrupted (entry {self.key!r} {why})."
    )

  def _raw(self, n: int) -> bytes:
    n = min(n, self.raw_left)
    self.file.seek(self.position)
    data = self.file.read(n)
    if len(data) < n:
      raise self.corrupted("ends early")
    self.position += n
    self.raw_left -= n
    return data

  def _inflate(self, n: int) -> bytes:
    inflater = self.inflater
    while not inflater.eof:
      data = inflater.unconsumed_tail
      if not data:
        if not self.raw_left:
          raise self.corrupted("has compressed data that ends early")
        data = self._raw(_CHUNK_BYTES)
      out = inflater.decompress(data, n)
      if out:
        return out
      if not inflater.eof and len(inflater.unconsumed_tail) == len(data):
        raise self.corrupted("has compressed data that makes no progress")
    return b""

  def read(self, n: int = -1) -> bytes:
    n = self.left if n is None or n < 0 else min(n, self.left)
    if n == 0:
      return b""
    data = self._raw(n) if self.inflater is None else self._inflate(n)
    self.left -= len(data)
    self.crc = zlib.crc32(data, self.crc)
    return data

  def finish(self) -> None:
    """Checks that the member held exactly its declared bytes, and their CRC."""
    if self.left:
      raise self.corrupted(f"ends {self.left} bytes short of its declared size")
    if self.inflater is not None and self._inflate(1):
      raise self.corrupted("holds more data than its declared size")
    if self.crc != self.info.CRC:
      raise self.corrupted("fails its CRC-32 check")


# What NumPy's .npy header parser (ast.literal_eval, tokenize, descr_to_dtype)
# raises on a corrupted header.
_HEADER_ERRORS = (
  ValueError,
  SyntaxError,
  TypeError,
  KeyError,
  RecursionError,
  MemoryError,
  tokenize.TokenError,
)


class Header(NamedTuple):
  """What a member's .npy header declares."""

  shape: tuple[int, ...]
  fortran_order: bool
  dtype: np.dtype


def _nesting(text: bytes) -> int:
  depth = deepest = 0
  for byte in text:
    depth += (byte in b"([{") - (byte in b")]}")
    deepest = max(deepest, depth)
  return deepest


def _npy_header(member: _Member, bound: int) -> Header:
  """The header of a member's .npy array, checked, with nothing of its data read."""
  where = member.where
  try:
    version = np.lib.format.read_magic(member)
  except ValueError:
    raise ModelFileError(f"{where} is not a .npy array; it is corrupted.") from None
  readers = {
    (1, 0): (np.lib.format.read_array_header_1_0, "<H"),
    (2, 0): (np.lib.format.read_array_header_2_0, "<I"),
  }
  if version not in readers:
    raise ModelFileError(
      f"{where} is a .npy array of version {version[0]}.{version[1]}; mfjax "
      "reads versions 1.0 and 2.0 (what NumPy writes for plain arrays)."
    )
  reader, length_format = readers[version]
  prefix = member.read(struct.calcsize(length_format))
  if len(prefix) < struct.calcsize(length_format):
    raise member.corrupted("ends inside its .npy header")
  (length,) = struct.unpack(length_format, prefix)
  if length > _MAX_HEADER_BYTES:
    raise ModelFileError(
      f"{where} has a .npy header of {length} bytes; plain arrays need under "
      f"{_MAX_HEADER_BYTES}, and it is not read."
    )
  text = member.read(length)
  if len(text) < length:
    raise member.corrupted("ends inside its .npy header")
  if _nesting(text) > _MAX_HEADER_NESTING:
    raise ModelFileError(
      f"{where} has a deeply nested .npy header (a nested structured dtype); "
      "mfjax model files hold plain arrays of numbers and text."
    )
  try:
    with warnings.catch_warnings():  # The Python 2 header fallback warns.
      warnings.simplefilter("ignore")
      header = Header(
        *reader(io.BytesIO(prefix + text), max_header_size=_MAX_HEADER_BYTES)
      )
  except _HEADER_ERRORS as e:
    raise ModelFileError(
      f"{where} has a corrupted .npy header ({str(e)[:200]})."
    ) from None
  _check_header(where, header, bound)
  return header


def _check_header(where: str, header: Header, bound: int) -> None:
  dtype, shape = header.dtype, header.shape
  if dtype.hasobject:
    raise ModelFileError(
      f"{where} holds pickled (object) data; mfjax model files never do, and it "
      "is not loaded."
    )
  if dtype.fields is not None or dtype.subdtype is not None:
    raise ModelFileError(
      f"{where} has a structured dtype ({dtype.descr!r:.100}); mfjax model files "
      "hold plain arrays of numbers and text."
    )
  if dtype.kind not in _ARRAY_KINDS or dtype.itemsize == 0:
    raise ModelFileError(
      f"{where} has dtype {dtype}; mfjax model files hold integers, floats and "
      "text only."
    )
  if len(shape) > _MAX_NDIM or any(not 0 <= n <= bound for n in shape):
    raise ModelFileError(f"{where} declares an impossible shape {shape!r:.100}.")


class Archive:
  """A model file's members, each read only after what the zip directory and its
  .npy header declare has been checked against the file's size."""

  def __init__(self, path: str, file, size: int):
    self.path, self.file, self.size = path, file, size
    self.bound = _MAX_EXPANSION * size + _SLACK_BYTES
    self.members = _members(path, file, size, self.bound)

  def _open(self, key: str) -> tuple[_Member, Header]:
    member = _Member(self.path, key, self.file, self.members[key], self.size)
    header = _npy_header(member, self.bound)
    where = member.where
    nbytes = math.prod(header.shape) * header.dtype.itemsize
    if nbytes != member.left:
      raise ModelFileError(
        f"{where} declares shape {header.shape} of {header.dtype} ({nbytes} "
        f"bytes), but its member holds {member.left} bytes of data; it is "
        "corrupted."
      )
    return member, header

  def header(self, key: str) -> Header:
    return self._open(key)[1]

  def read(self, key: str) -> np.ndarray:
    member, header = self._open(key)
    try:
      flat = np.empty(member.left, np.uint8)
    except MemoryError:
      raise ModelFileError(
        f"{member.where} needs {member.left} bytes, more memory than is free."
      ) from None
    done = 0
    while done < flat.size:
      chunk = member.read(min(_CHUNK_BYTES, flat.size - done))
      if not chunk:
        raise member.corrupted("ends early")
      flat[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
      done += len(chunk)
    member.finish()
    order = "F" if header.fortran_order else "C"
    return flat.view(header.dtype).reshape(header.shape, order=order)
