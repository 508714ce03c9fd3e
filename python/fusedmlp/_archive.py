"""Model files: a portable, versioned container for a fitted estimator's settings and arrays.

``est.save(path)`` and ``fusedmlp.load(path)`` go through :func:`write_archive` and
:func:`read_archive`; :func:`describe` reads the header alone.

The format (version 1)
----------------------
A model file is a ZIP archive (the header DEFLATE-compressed, the arrays stored):

``fusedmlp.json``
    A UTF-8 JSON object with the keys

    - ``format``: always ``"fusedmlp-model"``;
    - ``format_version``: an integer, :data:`FORMAT_VERSION` (1);
    - ``fusedmlp_version``: the version of fusedmlp that wrote the file;
    - ``kind``: what the file holds, e.g. ``"MLPClassifier"``;
    - ``meta``: the estimator's settings, plain JSON (no NaN or infinity);
    - ``manifest``: one entry per array, ``{"dtype": "<f8", "shape": [64, 10],
      "nbytes": 5120, "sha256": "<64 hex digits>"}``, where ``dtype`` is numpy's
      ``dtype.str`` in little-endian order, ``nbytes`` the size of the array's data and
      ``sha256`` the digest of those data bytes (C order, as stored in the ``.npy`` member).

``arrays/<name>.npy``
    One member per array, in numpy's ``.npy`` format (version 1.0, or 2.0 for a header
    beyond 64 KiB; C order, little-endian).
    Names use ``[A-Za-z0-9_.-]`` and start with a letter, digit or underscore. Allowed dtypes:
    bool, int8 to int64, uint8 to uint64, float32, float64, fixed-width unicode (``<U``) and
    bytes (``|S``).

Members carry a fixed timestamp (1980-01-01), so saving the same model twice gives the same
bytes.

Versions: a reader of version N refuses files of a newer version and says to upgrade. In a
file of its own version it ignores top-level keys it does not know, so a later release may add
information that older readers can skip without bumping the version; anything an older reader
must understand bumps ``format_version``.

Reading is safe on untrusted files: nothing is unpickled or executed (array data is copied
byte for byte into an array of an allowed dtype), every member's declared size is checked
against the manifest before any array is decompressed, and every way a file can be wrong (not
a ZIP, truncated, bit flips, CRC errors, members missing, added, duplicated or named outside
the archive, a manifest that disagrees with the data, a newer version, JSON of the wrong types,
zip bombs) raises :class:`FileFormatError`. A file can still declare, consistently, arrays up
to DEFLATE's limit of about 1000 times its size: ``max_bytes`` bounds that for files from
untrusted sources.
"""

import ast
import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FileFormatError",
    "describe",
    "read_archive",
    "write_archive",
]

FORMAT_NAME = "fusedmlp-model"
FORMAT_VERSION = 1
HEADER_MEMBER = "fusedmlp.json"

_HEADER_KEYS = ("format", "format_version", "fusedmlp_version", "kind", "meta", "manifest")
_ENTRY_KEYS = frozenset(("dtype", "shape", "nbytes", "sha256"))
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_ARRAY_NAME = re.compile(_NAME + r"\Z")
_ARRAY_MEMBER = re.compile(r"arrays/(" + _NAME + r")\.npy\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_FIXED_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.uint16, np.uint32, np.uint64, np.float32, np.float64,
    )
)
_TEXT_DTYPE = re.compile(r"(<U|\|S)([1-9][0-9]{0,9})\Z")
_MAX_ITEMSIZE = (1 << 31) - 1  # numpy's limit

_MAX_NDIM = 32
_MAX_DEPTH = 64  # nesting of meta; keeps every walk far from the interpreter's recursion limit
_JSON_MAX = 64 << 20
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 4096  # numpy writes ~128 bytes; 32 dims of 20 digits stay well under this
_DEFLATE_MAX_RATIO = 1032  # no DEFLATE stream expands by more: 258 bytes from 2 bits
_ZIP64_FROM = 1 << 30
_CHUNK = 1 << 20
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

# What zipfile, zlib and the file object raise on a damaged file. FileFormatError is a
# ValueError: every handler lets it through first.
_DAMAGE = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
    NotImplementedError, RuntimeError, LookupError, OverflowError,
)


class FileFormatError(ValueError):
    """A model file that cannot be loaded.

    Raised for every file that is not a fusedmlp model, is truncated or damaged, was edited by
    hand, or was written by a newer format version. The message says what is wrong and what
    to do; the original exception, if any, is chained as ``__cause__``.
    """


# ---- writing ------------------------------------------------------------------------------


def write_archive(file, kind, meta, arrays):
    """Write a model file.

    Parameters
    ----------
    file : str, os.PathLike or binary file object
        Where to write. A path is written atomically: the model goes to a temporary file in
        the same directory, which then replaces ``file``, so a crash or an error never leaves
        a half-written model behind. A file object (opened ``'wb'``, seekable or not) is
        written from its current position, and is left open.
    kind : str
        What the file holds, e.g. ``'MLPClassifier'``.
    meta : dict
        Settings, as plain Python: dict (str keys), list, str, int, float, bool and None,
        nested at most 64 levels. It comes back equal from :func:`read_archive`.
    arrays : dict of str to numpy.ndarray
        The arrays, by name (``[A-Za-z0-9_.-]``, starting with a letter, digit or underscore,
        at most 128 characters). dtypes: bool, int8 to int64, uint8 to uint64, float32,
        float64, fixed-width unicode (``U``) and bytes (``S``). Arrays are stored in C order
        and little-endian; they come back equal, with those dtypes.

    Raises
    ------
    TypeError
        If ``kind`` is not a str, ``meta`` holds something other than plain JSON types (the
        message names the key), or an array is not a numpy array or has a dtype outside the
        list (object, structured, float16, datetime, ...).
    ValueError
        If ``kind`` is empty, ``meta`` holds NaN or infinity or nests too deeply, or an array
        name is not allowed.
    OSError
        If the file cannot be written; a path is then left as it was.

    Notes
    -----
    Everything is checked before the first byte is written.
    """
    header_bytes, payload = _prepare(kind, meta, arrays)
    if _is_path(file):
        _write_atomically(os.fsdecode(file), header_bytes, payload)
    else:
        _check_file_object(file, "write")
        _write_zip(file, header_bytes, payload)


def _prepare(kind, meta, arrays):
    """The JSON header's bytes and the list of (name, C-ordered little-endian array)."""
    if type(kind) is not str:
        raise TypeError(f"kind must be a str, got {type(kind).__name__}")
    if not kind:
        raise ValueError("kind must not be empty")
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    _check_json_value(meta, "meta", 0)
    if not isinstance(arrays, dict):
        raise TypeError(
            f"arrays must be a dict of name to numpy array, got {type(arrays).__name__}"
        )
    manifest, payload = {}, []
    for name, value in arrays.items():
        if type(name) is not str:
            raise TypeError(f"array names must be str, got {name!r}")
        if not _ARRAY_NAME.match(name):
            raise ValueError(
                f"array name {name!r} is not allowed: use letters, digits, '_', '.' and '-', "
                "start with a letter, digit or '_', at most 128 characters"
            )
        array = _canonical_array(name, value)
        manifest[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "nbytes": array.nbytes,
            "sha256": hashlib.sha256(array).hexdigest(),
        }
        payload.append((name, array))
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fusedmlp_version": _fusedmlp_version(),
        "kind": kind,
        "meta": meta,
        "manifest": manifest,
    }
    text = json.dumps(header, allow_nan=False, ensure_ascii=False, indent=1)
    return text.encode("utf-8"), payload


def _check_json_value(value, where, depth):
    """Raise TypeError or ValueError, naming the key, unless `value` is plain, finite JSON."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where} nests more than {_MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(
                f"{where} is {value!r}: a model file's JSON cannot hold NaN or infinity "
                "(store None or a string instead)"
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(
                    f"{where} has the key {key!r} of type {type(key).__name__}: "
                    "JSON keys must be str"
                )
            _check_json_value(item, f"{where}[{key!r}]", depth + 1)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{where}[{i}]", depth + 1)
        return
    raise TypeError(
        f"{where} is of type {kind.__module__}.{kind.__qualname__}: meta holds only dict, list, "
        "str, int, float, bool and None (convert numpy scalars with .item(), tuples with list(), "
        "and store arrays in `arrays`)"
    )


def _canonical_array(name, value):
    """`value` as a C-ordered, little-endian array of an allowed dtype, or TypeError."""
    if not isinstance(value, np.ndarray) or isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"arrays[{name!r}] is a {type(value).__module__}.{type(value).__qualname__}, "
            "not a numpy array (masked arrays would lose their mask)"
        )
    dtype = value.dtype
    if dtype.hasobject:
        raise TypeError(
            f"arrays[{name!r}] has an object dtype: a model file holds no objects, which would "
            "need pickling (store strings as a fixed-width 'U' array)"
        )
    if dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(
            f"arrays[{name!r}] has a structured dtype {dtype}: store each field as its own array"
        )
    little = dtype.newbyteorder("<")
    if _itemsize(little.str) is None:
        raise TypeError(
            f"arrays[{name!r}] has dtype {dtype}: a model file holds bool, int8 to int64, uint8 "
            "to uint64, float32, float64, and non-empty fixed-width unicode (U) or bytes (S)"
        )
    if value.ndim > _MAX_NDIM:
        raise ValueError(f"arrays[{name!r}] has {value.ndim} dimensions, more than {_MAX_NDIM}")
    # np.ascontiguousarray would make a 0-d array 1-d.
    return np.asarray(value, dtype=little, order="C")


def _member_info(name, compress_type=zipfile.ZIP_DEFLATED):
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = compress_type
    info.external_attr = 0o644 << 16
    return info


def _write_zip(fileobj, header_bytes, payload):
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_member_info(HEADER_MEMBER), header_bytes)
        for name, array in payload:
            # stored: float weights deflate by only 4-7%, at about 30 MB/s (a checkpoint of
            # a 535k-parameter Adam model took 0.3 s); readers accept both methods
            info = _member_info(f"arrays/{name}.npy", zipfile.ZIP_STORED)
            with zf.open(info, "w", force_zip64=array.nbytes >= _ZIP64_FROM) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)


def _write_atomically(path, header_bytes, payload):
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            errno.ENOENT, "no such directory to write the model file in", directory
        )
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a model file", path)
    # os.open with 0o666 lets the umask decide the new file's mode, as open() would.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    prefix = "." + os.path.basename(target)[:100]
    while True:
        temp = os.path.join(directory, f"{prefix}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            _write_zip(f, header_bytes, payload)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            # Replacing a model keeps its permissions, e.g. a private 0o600.
            os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename durable where the platform allows (POSIX); best effort elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading ------------------------------------------------------------------------------


def read_archive(file, *, max_bytes=None):
    """Read a model file written by :func:`write_archive`.

    Parameters
    ----------
    file : str, os.PathLike or binary file object
        The model file, or a file object opened ``'rb'`` (read from its current position and
        left open; a non-seekable one is read into memory first).
    max_bytes : int, optional
        The most bytes the file may decompress to (header plus arrays). By default the limit
        is what the file's manifest declares plus a small margin for the ``.npy`` headers, and
        at most what DEFLATE can produce from the file's size; pass a limit when reading
        files from untrusted sources.

    Returns
    -------
    kind : str
        What the file holds, e.g. ``'MLPClassifier'``.
    meta : dict
        The settings passed to :func:`write_archive`, equal to them.
    arrays : dict of str to numpy.ndarray
        The arrays in the order they were written: C-contiguous, writable, little-endian,
        bit-identical to those written.

    Raises
    ------
    FileFormatError
        If the file is not a fusedmlp model file, is truncated, damaged or edited, was written
        by a newer format version, or would decompress to more than ``max_bytes``.
    FileNotFoundError
        If the path does not exist.
    TypeError
        If `file` is neither a path nor a readable binary file object.

    Notes
    -----
    Nothing in the file is unpickled or executed: array data is copied byte for byte into an
    array of one of the allowed dtypes, after the manifest's sizes have been checked against
    the ZIP directory and before it is returned, against its SHA-256.
    """
    header, arrays = _load(file, max_bytes, with_arrays=True)
    return header["kind"], header["meta"], arrays


def describe(file):
    """The header of a model file, without loading its arrays.

    Parameters
    ----------
    file : str, os.PathLike or binary file object
        The model file, as for :func:`read_archive`.

    Returns
    -------
    header : dict
        The parsed ``fusedmlp.json``, checked: ``format``, ``format_version``,
        ``fusedmlp_version``, ``kind``, ``meta`` and ``manifest`` (per array: ``dtype``,
        ``shape``, ``nbytes``, ``sha256``), plus any keys a later release added.

    Raises
    ------
    FileFormatError
        If the file or its header is unreadable, damaged, or of a newer format version.
        Damage inside the arrays is found by :func:`read_archive` only.
    FileNotFoundError
        If the path does not exist.
    """
    header, _ = _load(file, None, with_arrays=False)
    return header


def _load(file, max_bytes, with_arrays):
    if max_bytes is not None:
        if type(max_bytes) is not int:
            raise TypeError(f"max_bytes must be an int or None, got {type(max_bytes).__name__}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    with _opened(file) as (fp, label):
        try:
            zf, members = _open_zip(fp)
            with zf:
                header = _read_header(zf, members, max_bytes)
                arrays = None
                if with_arrays:
                    arrays = _read_arrays(zf, members, header["manifest"], max_bytes)
        except FileFormatError as e:
            if label is None:
                raise
            raise FileFormatError(f"{label}: {e}") from e.__cause__
    return header, arrays


@contextlib.contextmanager
def _opened(file):
    """Yield (seekable binary file, label for messages or None)."""
    if _is_path(file):
        path = os.fspath(file)
        label = os.fsdecode(path)
        mode = os.stat(path).st_mode  # FileNotFoundError stays what it is
        if stat.S_ISDIR(mode):
            raise FileFormatError(f"{label} is a directory, not a fusedmlp model file")
        if not stat.S_ISREG(mode):
            # A FIFO would block open() forever; a device has no end to seek to.
            raise FileFormatError(
                f"{label} is not a regular file (a pipe or a device): "
                "pass an open file object instead"
            )
        with open(path, "rb") as fp:
            yield fp, label
        return
    _check_file_object(file, "read")
    name = getattr(file, "name", None)
    label = name if isinstance(name, str) else None
    seekable = getattr(file, "seekable", None)
    if callable(seekable) and seekable():
        yield file, label
    else:
        yield io.BytesIO(file.read()), label


def _open_zip(fp):
    """The ZipFile on `fp` and its members by name, after checks that need no decompression."""
    start = fp.tell()
    end = fp.seek(0, io.SEEK_END)
    fp.seek(start)
    if end <= start:
        raise FileFormatError("the file is empty: not a fusedmlp model file")
    magic = fp.read(4)
    fp.seek(start)
    try:
        zf = zipfile.ZipFile(fp)
    except zipfile.BadZipFile as e:
        if magic == b"PK\x03\x04" and "not a zip file" not in str(e).lower():
            raise FileFormatError(f"the file's ZIP directory is damaged ({_explain(e)})") from e
        if magic == b"PK\x03\x04":
            raise FileFormatError(
                "the file is truncated or its end is damaged (no ZIP central directory): "
                "save the model again or use an intact copy"
            ) from e
        if magic[:1] == b"\x80":
            raise FileFormatError(
                "not a fusedmlp model file: it looks like a pickle, which fusedmlp never loads "
                "(unpickle it yourself only if you trust its source)"
            ) from e
        raise FileFormatError("not a fusedmlp model file (not a ZIP archive)") from e
    except _DAMAGE as e:
        raise FileFormatError(f"the file's ZIP directory is damaged ({_explain(e)})") from e
    try:
        members = _check_members(zf.infolist(), end)
    except BaseException:
        zf.close()
        raise
    return zf, members


def _check_members(infos, file_end):
    members = {}
    for info in infos:
        name = info.filename
        if name in members:
            raise FileFormatError(f"the file holds the member {name!r} twice: it was tampered with")
        if name != HEADER_MEMBER and not _ARRAY_MEMBER.match(name):
            if _escapes(name):
                raise FileFormatError(
                    f"the member name {name!r} points outside the archive (path traversal): "
                    "refusing the file"
                )
            raise FileFormatError(
                f"unexpected member {name!r}: a fusedmlp model holds only {HEADER_MEMBER} and "
                "arrays/<name>.npy (the file is damaged or was edited, or is not a fusedmlp model)"
            )
        if info.flag_bits & 0x1:
            raise FileFormatError(f"member {name!r} is encrypted: not a fusedmlp model file")
        if info.compress_type == zipfile.ZIP_STORED:
            largest = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            largest = _DEFLATE_MAX_RATIO * info.compress_size + 1024
        else:
            raise FileFormatError(
                f"member {name!r} uses ZIP compression method {info.compress_type}; fusedmlp "
                "reads DEFLATE (8) and stored (0) members"
            )
        if info.file_size > largest:
            raise FileFormatError(
                f"member {name!r} declares {info.file_size} bytes from {info.compress_size} "
                "compressed, more than its compression can produce: the file is damaged or crafted"
            )
        members[name] = info
    # Members that share compressed data make a small file decompress to a huge one.
    spans = sorted(infos, key=lambda info: info.header_offset)
    following = [info.header_offset for info in spans[1:]] + [file_end]
    for info, next_offset in zip(spans, following):
        if info.header_offset + 30 + info.compress_size > next_offset:
            raise FileFormatError(
                f"member {info.filename!r} overlaps the next member or the end of the file: "
                "the file is damaged or crafted (a zip bomb?)"
            )
    return members


def _escapes(name):
    parts = re.split(r"[/\\]", name)
    return name.startswith(("/", "\\")) or ".." in parts or bool(re.match(r"[A-Za-z]:", name))


def _read_header(zf, members, max_bytes):
    info = members.get(HEADER_MEMBER)
    if info is None:
        raise FileFormatError(f"the file has no {HEADER_MEMBER}: not a fusedmlp model file")
    limit = _JSON_MAX if max_bytes is None else min(_JSON_MAX, max_bytes)
    if info.file_size > limit:
        if max_bytes is not None and max_bytes < _JSON_MAX:
            raise FileFormatError(
                f"{HEADER_MEMBER} declares {info.file_size} bytes, more than max_bytes="
                f"{max_bytes} allows: raise max_bytes to read this file"
            )
        raise FileFormatError(
            f"{HEADER_MEMBER} declares {info.file_size} bytes, more than the {limit} allowed: "
            "the file is damaged or crafted"
        )
    with _damage(f"{HEADER_MEMBER} cannot be read"):
        with zf.open(info) as stream:
            raw = stream.read(limit + 1)
    return _parse_header(raw)


def _parse_header(raw):
    try:
        header = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
        )
    except RecursionError as e:
        raise FileFormatError(
            f"{HEADER_MEMBER} nests too deeply: the file was edited or crafted"
        ) from e
    except ValueError as e:  # also UnicodeDecodeError, JSONDecodeError and the hooks' errors
        raise FileFormatError(
            f"{HEADER_MEMBER} is not valid JSON ({e}): the file is damaged or was edited"
        ) from e
    return _check_header(header)


def _object_without_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {duplicate!r} appears twice in one object")
    return obj


def _reject_constant(token):
    raise ValueError(f"{token} is not JSON")


def _check_header(header):
    """`header` if it is a well-formed header of a version this fusedmlp reads."""
    edited = "the file is damaged or was edited"
    if not isinstance(header, dict):
        raise FileFormatError(
            f"{HEADER_MEMBER} holds a JSON {type(header).__name__}, not an object: "
            "not a fusedmlp model file"
        )
    if header.get("format") != FORMAT_NAME:
        found = f"the format {header['format']!r}" if "format" in header else "no format"
        raise FileFormatError(
            f"{HEADER_MEMBER} names {found}, not {FORMAT_NAME!r}: not a fusedmlp model file"
        )
    version = header.get("format_version")
    if type(version) is not int:
        raise FileFormatError(f"format_version is {version!r}, not an integer: {edited}")
    if version > FORMAT_VERSION:
        writer = header.get("fusedmlp_version")
        by = f" (fusedmlp {writer})" if isinstance(writer, str) else ""
        unknown = [key for key in header if key not in _HEADER_KEYS]
        also = f"; its header has keys this version does not know: {unknown}" if unknown else ""
        raise FileFormatError(
            f"written by format version {version}{by}; this fusedmlp ({_fusedmlp_version()}) "
            f"reads version {FORMAT_VERSION} (upgrade fusedmlp){also}"
        )
    if version < 1:
        raise FileFormatError(
            f"format_version {version} does not exist (versions start at 1): {edited}"
        )
    expected = {"fusedmlp_version": str, "kind": str, "meta": dict, "manifest": dict}
    for key, kind in expected.items():
        if key not in header:
            raise FileFormatError(f"{HEADER_MEMBER} has no {key!r}: {edited}")
        if not isinstance(header[key], kind):
            raise FileFormatError(
                f"{key!r} in {HEADER_MEMBER} is a JSON {type(header[key]).__name__}, "
                f"not a {kind.__name__}: {edited}"
            )
    if not header["kind"]:
        raise FileFormatError(f"'kind' in {HEADER_MEMBER} is empty: {edited}")
    try:
        _check_json_value(header["meta"], "meta", 0)
    except (TypeError, ValueError) as e:
        raise FileFormatError(f"{e}: {edited}") from e
    for name, entry in header["manifest"].items():
        _check_manifest_entry(name, entry)
    return header


def _check_manifest_entry(name, entry):
    edited = "the file was edited or is not from fusedmlp"
    if not _ARRAY_NAME.match(name):
        raise FileFormatError(
            f"the manifest lists an array named {name!r}, which is not allowed: {edited}"
        )
    if not isinstance(entry, dict):
        raise FileFormatError(f"the manifest entry of array {name!r} is not an object: {edited}")
    if set(entry) != _ENTRY_KEYS:
        missing = sorted(_ENTRY_KEYS - set(entry))
        extra = sorted(set(entry) - _ENTRY_KEYS)
        raise FileFormatError(
            f"the manifest entry of array {name!r} lacks {missing} or has unknown keys "
            f"{extra}: {edited}"
        )
    dtype = entry["dtype"]
    itemsize = _itemsize(dtype) if type(dtype) is str else None
    if itemsize is None:
        why = ""
        if isinstance(dtype, str) and "O" in dtype:
            why = " (object arrays are never loaded: they would need unpickling)"
        raise FileFormatError(
            f"array {name!r} has dtype {dtype!r}, which no fusedmlp model holds{why}: {edited}"
        )
    shape = entry["shape"]
    if (
        type(shape) is not list
        or len(shape) > _MAX_NDIM
        or any(type(n) is not int or n < 0 for n in shape)
    ):
        raise FileFormatError(
            f"array {name!r} has the shape {shape!r}, not a list of sizes: {edited}"
        )
    nbytes = entry["nbytes"]
    needed = math.prod(shape) * itemsize
    if type(nbytes) is not int or nbytes != needed:
        raise FileFormatError(
            f"the manifest gives array {name!r} {nbytes!r} bytes, but dtype {dtype} and shape "
            f"{tuple(shape)} make {needed}: {edited}"
        )
    if type(entry["sha256"]) is not str or not _SHA256.match(entry["sha256"]):
        raise FileFormatError(
            f"array {name!r} has no valid sha256 (64 lowercase hex digits): {edited}"
        )


def _itemsize(dtype_str):
    """The item size of an allowed dtype string, or None for any other string; no numpy
    parsing of text from the file before it is known to be one of these."""
    if dtype_str in _FIXED_DTYPES:
        return int(dtype_str[2:])
    match = _TEXT_DTYPE.match(dtype_str)
    if not match:
        return None
    itemsize = int(match.group(2)) * (4 if match.group(1) == "<U" else 1)
    return itemsize if itemsize <= _MAX_ITEMSIZE else None


def _read_arrays(zf, members, manifest, max_bytes):
    stored = {}
    for member, info in members.items():
        match = _ARRAY_MEMBER.match(member)
        if match:
            stored[match.group(1)] = info
    for name in manifest:
        if name not in stored:
            raise FileFormatError(
                f"array {name!r} is listed in the manifest but missing from the file: "
                "the file is damaged or was edited"
            )
    for name in stored:
        if name not in manifest:
            raise FileFormatError(
                f"the file holds array {name!r}, which its manifest does not list: "
                "the file was edited"
            )
    # Every member must declare the size the manifest makes, give or take its .npy header, so
    # nothing decompresses beyond the manifest's total plus that margin.
    total = members[HEADER_MEMBER].file_size
    for name, entry in manifest.items():
        info = stored[name]
        margin = info.file_size - entry["nbytes"]
        if not 0 < margin <= _NPY_HEADER_MAX:
            raise FileFormatError(
                f"member {info.filename!r} declares {info.file_size} bytes, but array {name!r} "
                f"takes {entry['nbytes']} plus a header of at most {_NPY_HEADER_MAX}: "
                "the file is damaged or crafted (a zip bomb?)"
            )
        total += info.file_size
    if max_bytes is not None and total > max_bytes:
        raise FileFormatError(
            f"the model decompresses to {total} bytes, more than max_bytes={max_bytes}: "
            "pass a larger max_bytes if you trust the file"
        )
    return {name: _read_array(zf, stored[name], name, entry) for name, entry in manifest.items()}


def _read_array(zf, info, name, entry):
    dtype = np.dtype(entry["dtype"])
    shape = tuple(entry["shape"])
    nbytes = entry["nbytes"]
    digest = hashlib.sha256()
    data = np.empty(nbytes, np.uint8)
    with _damage(f"array {name!r} cannot be read"):
        with zf.open(info) as stream:
            descr, fortran_order, npy_shape = _read_npy_header(stream, name)
            if descr != entry["dtype"]:
                raise FileFormatError(
                    f"array {name!r} is stored as {descr!r} but the manifest says "
                    f"{entry['dtype']!r}: the file is damaged or was edited"
                )
            if npy_shape != shape:
                raise FileFormatError(
                    f"array {name!r} is stored with shape {npy_shape} but the manifest says "
                    f"{shape}: the file is damaged or was edited"
                )
            filled = 0
            while filled < nbytes:
                chunk = stream.read(min(_CHUNK, nbytes - filled))
                if not chunk:
                    raise FileFormatError(
                        f"array {name!r} stops after {filled} of {nbytes} bytes: "
                        "the file is damaged"
                    )
                data[filled:filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
                digest.update(chunk)
                filled += len(chunk)
            # Reading to the end also makes zipfile check the member's CRC-32.
            if stream.read(1):
                raise FileFormatError(
                    f"array {name!r} has bytes after its data: the file is damaged"
                )
    if digest.hexdigest() != entry["sha256"]:
        raise FileFormatError(
            f"checksum of array {name!r} does not match: the file is damaged or was edited"
        )
    array = data.view(dtype)
    # Values no array of this dtype can hold would fail later, far from the file.
    if dtype.kind == "b" and data.size and data.max() > 1:
        raise FileFormatError(
            f"array {name!r} holds bools other than 0 and 1: the file was crafted"
        )
    if dtype.kind == "U" and data.size and data.view("<u4").max() > 0x10FFFF:
        raise FileFormatError(
            f"array {name!r} holds characters beyond Unicode: the file was crafted"
        )
    if fortran_order:
        return np.array(array.reshape(shape, order="F"), order="C")
    return array.reshape(shape)


def _read_npy_header(stream, name):
    """(descr, fortran_order, shape) of the .npy member at `stream`, which is left at the data.

    Parsed here rather than by numpy so that only a literal of a known form is accepted, with
    a bounded length, on every supported numpy.
    """
    prefix = _read_exactly(stream, 8, name)
    if prefix[:6] != _NPY_MAGIC:
        raise FileFormatError(f"array {name!r} is not in .npy format: the file is damaged")
    version = (prefix[6], prefix[7])
    if version == (1, 0):
        (length,) = struct.unpack("<H", _read_exactly(stream, 2, name))
    elif version == (2, 0):
        (length,) = struct.unpack("<I", _read_exactly(stream, 4, name))
    else:
        raise FileFormatError(
            f"array {name!r} is in .npy format version {version[0]}.{version[1]}; fusedmlp reads "
            "1.0 and 2.0: the file is damaged or not from fusedmlp"
        )
    if length > _NPY_HEADER_MAX:
        raise FileFormatError(
            f"array {name!r} has a .npy header of {length} bytes: the file is damaged"
        )
    text = _read_exactly(stream, length, name).decode("latin1")
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise FileFormatError(
            f"array {name!r} has an unreadable .npy header: the file is damaged"
        ) from e
    if (
        not isinstance(fields, dict)
        or set(fields) != {"descr", "fortran_order", "shape"}
        or type(fields["descr"]) is not str
        or type(fields["fortran_order"]) is not bool
        or type(fields["shape"]) is not tuple
        or any(type(n) is not int for n in fields["shape"])
    ):
        raise FileFormatError(f"array {name!r} has a malformed .npy header: the file is damaged")
    return fields["descr"], fields["fortran_order"], fields["shape"]


def _read_exactly(stream, size, name):
    data = stream.read(size)
    if len(data) != size:
        raise FileFormatError(f"array {name!r} is cut short: the file is damaged")
    return data


@contextlib.contextmanager
def _damage(what):
    """Turn what zipfile, zlib or the file raise on damaged data into FileFormatError."""
    try:
        yield
    except FileFormatError:
        raise
    except _DAMAGE as e:
        raise FileFormatError(f"{what} ({_explain(e)}): the file is damaged") from e


def _explain(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---- shared -------------------------------------------------------------------------------


def _is_path(file):
    return isinstance(file, (str, bytes, os.PathLike))


def _check_file_object(file, mode):
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"the file is open in text mode: open it in binary mode ('{mode[0]}b')")
    if not callable(getattr(file, mode, None)):
        raise TypeError(
            f"expected a path or a binary file object with .{mode}(), got {type(file).__name__}"
        )
    if getattr(file, "closed", False):
        raise ValueError("the file object is closed")
    able = getattr(file, "readable" if mode == "read" else "writable", None)
    if callable(able) and not able():
        doing = "reading" if mode == "read" else "writing"
        raise TypeError(f"the file object is not open for {doing}")


def _fusedmlp_version():
    # Imported when called: the package's __init__ may import this module before it sets
    # __version__.
    from . import __version__

    return __version__
