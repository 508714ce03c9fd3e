"""The model-file container (fusedmlp._archive): round trips of every allowed dtype, atomic
writes, and a fuzz of truncated, bit-flipped, hand-edited and crafted files, each of which must
raise FileFormatError and nothing else, or, where a flip lands in bytes that do not matter, load
bit-identical arrays. The fuzz also runs once in a child interpreter, to show that no file
crashes it."""

import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
from functools import lru_cache

import numpy as np
import pytest

import fusedmlp
from fusedmlp._archive import (
    FORMAT_VERSION,
    FileFormatError,
    describe,
    read_archive,
    write_archive,
)

ALLOWED_DTYPES = [
    np.bool_, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.float32, np.float64, "U7", "S5",
]
SHAPES = [(), (0,), (0, 3), (5,), (3, 4), (2, 3, 4)]

META = {
    "hidden_layer_sizes": [30, 20],
    "activation": "relu",
    "alpha": 1e-4,
    "tol": -0.0,
    "early_stopping": False,
    "random_state": None,
    "big": 2**70,
    "note": "naïve café 🐍",
    "loss_curve": [0.9, 0.5, 0.25],
    "nested": {"a": [{"b": [1, [2, [3]]]}]},
}


def random_array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "b":
        values = rng.random(n) < 0.5
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    elif dtype.kind == "f":
        values = rng.standard_normal(n).astype(dtype)
        specials = [np.nan, np.inf, -0.0, np.finfo(dtype).smallest_subnormal]
        values[: min(n, 4)] = specials[: min(n, 4)]
    elif dtype.kind == "U":
        alphabet = list("abcXYZ éß猫🐍\x00")
        words = ["".join(rng.choice(alphabet, rng.integers(0, 8))) for _ in range(n)]
        values = np.array(words, dtype)
    else:
        words = [rng.bytes(int(rng.integers(0, 6))) for _ in range(n)]
        values = np.array(words, dtype)
    return values.reshape(shape)


def model_arrays():
    rng = np.random.default_rng(1)
    return {
        "coefs_0": rng.standard_normal((20, 30)),
        "coefs_1": rng.standard_normal((30, 3)).astype(np.float32),
        "intercepts_0": rng.standard_normal(30),
        "classes_": np.array(["chat", "Hund", "ネコ"]),
        "n_iter_": np.array(42, np.int64),
        "mask": rng.random(17) < 0.3,
        "labels.bytes": np.array([b"a", b"bc"]),
        "empty": np.zeros((0, 4), np.uint16),
    }


@lru_cache(maxsize=None)
def valid_archive():
    out = io.BytesIO()
    write_archive(out, "MLPClassifier", META, model_arrays())
    return out.getvalue()


def assert_same_arrays(got, expected):
    assert list(got) == list(expected)
    for name, array in expected.items():
        want = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        assert got[name].tobytes() == want.tobytes(), name
        assert got[name].flags.c_contiguous and got[name].flags.writeable, name


def outcome(data):
    """'ok' if `data` loads as the valid archive, bit for bit; 'refused' on FileFormatError.
    Any other exception escapes and fails the test."""
    try:
        kind, meta, arrays = read_archive(io.BytesIO(data))
    except FileFormatError:
        return "refused"
    assert kind == "MLPClassifier"
    assert meta == META
    assert_same_arrays(arrays, model_arrays())
    return "ok"


def zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def build_zip(members, compression=zipfile.ZIP_DEFLATED):
    """A ZIP of `members` (name -> bytes, written in order, duplicates allowed as pairs)."""
    out = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we plant
        with zipfile.ZipFile(out, "w", compression=compression) as zf:
            for name, content in items:
                zf.writestr(name, content)
    return out.getvalue()


def edited(edit):
    """The valid archive with its JSON header changed by `edit(header)` and re-zipped."""
    members = zip_members(valid_archive())
    header = json.loads(members["fusedmlp.json"])
    edit(header)
    members["fusedmlp.json"] = json.dumps(header).encode()
    return build_zip(members)


def member_spans(data):
    """{name: (local header offset, data start, data end)} of each member of `data`."""
    spans = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            offset = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[offset + 26: offset + 30])
            start = offset + 30 + name_len + extra_len
            spans[info.filename] = (offset, start, start + info.compress_size)
    return spans


def central_entry(data, name):
    """Offset of `name`'s central directory entry in `data`."""
    offset = data.index(b"PK\x01\x02")
    while True:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[offset + 28: offset + 34])
        if data[offset + 46: offset + 46 + name_len] == name.encode():
            return offset
        offset += 46 + name_len + extra_len + comment_len


def patched(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# ---- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALLOWED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_allowed_dtype_round_trips(dtype):
    arrays = {f"a{i}": random_array(dtype, shape, seed=i) for i, shape in enumerate(SHAPES)}
    out = io.BytesIO()
    write_archive(out, "Test", {}, arrays)
    kind, meta, got = read_archive(io.BytesIO(out.getvalue()))
    assert (kind, meta) == ("Test", {})
    assert_same_arrays(got, arrays)


def test_layouts_and_byte_orders_come_back_c_ordered_little_endian():
    base = random_array(np.float64, (6, 8))
    arrays = {
        "fortran": np.asfortranarray(base),
        "strided": base[::2, 1::3],
        "big_endian": base.astype(">f8"),
        "big_endian_ints": np.arange(10, dtype=">i4"),
        "big_endian_text": np.array(["ab", "ç"], ">U2"),
        "transposed": base.T,
    }
    out = io.BytesIO()
    write_archive(out, "Test", {}, arrays)
    _, _, got = read_archive(io.BytesIO(out.getvalue()))
    assert_same_arrays(got, arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(got[name], array)
        assert got[name].dtype.byteorder in "<|="


def test_unicode_class_labels_round_trip_exactly():
    labels = np.array(["", "a", "Straße", "猫", "🐍 snake", "trailing  ", "x" * 40])
    out = io.BytesIO()
    write_archive(out, "MLPClassifier", {"label": "ünïcode ☃"}, {"classes_": labels})
    _, meta, got = read_archive(io.BytesIO(out.getvalue()))
    assert meta == {"label": "ünïcode ☃"}
    assert got["classes_"].tolist() == labels.tolist()
    assert got["classes_"].dtype == labels.dtype


def test_large_array_round_trips():
    big = np.random.default_rng(2).standard_normal((1000, 1000)).astype(np.float32)
    out = io.BytesIO()
    write_archive(out, "Test", {}, {"w": big})
    _, _, got = read_archive(io.BytesIO(out.getvalue()))
    assert got["w"].tobytes() == big.tobytes()


def test_meta_round_trips_equal():
    out = io.BytesIO()
    write_archive(out, "MLPRegressor", META, {})
    kind, meta, arrays = read_archive(io.BytesIO(out.getvalue()))
    assert (kind, meta, arrays) == ("MLPRegressor", META, {})
    assert str(meta["tol"]) == "-0.0"


class NonSeekable(io.RawIOBase):
    """A stream without seek or tell, like a pipe or a socket."""

    def __init__(self, data=b""):
        self.buffer = io.BytesIO(data)

    def readable(self):
        return True

    def writable(self):
        return True

    def readinto(self, b):
        return self.buffer.readinto(b)

    def write(self, b):
        return self.buffer.write(b)


@pytest.mark.parametrize("how", ["str", "pathlib", "bytes", "open_file", "bytesio", "non_seekable"])
def test_paths_and_file_objects(tmp_path, how):
    arrays = model_arrays()
    path = tmp_path / "model.fmlp"
    if how in ("str", "pathlib", "bytes"):
        target = {"str": str(path), "pathlib": path, "bytes": os.fsencode(path)}[how]
        write_archive(target, "MLPClassifier", META, arrays)
        result = read_archive(target)
    elif how == "open_file":
        with open(path, "wb") as f:
            write_archive(f, "MLPClassifier", META, arrays)
            assert not f.closed
        with open(path, "rb") as f:
            result = read_archive(f)
            assert not f.closed
    elif how == "bytesio":
        out = io.BytesIO()
        write_archive(out, "MLPClassifier", META, arrays)
        result = read_archive(io.BytesIO(out.getvalue()))
    else:
        out = NonSeekable()
        write_archive(out, "MLPClassifier", META, arrays)
        result = read_archive(NonSeekable(out.buffer.getvalue()))
    kind, meta, got = result
    assert (kind, meta) == ("MLPClassifier", META)
    assert_same_arrays(got, arrays)


def test_file_objects_of_the_wrong_kind_are_refused(tmp_path):
    with pytest.raises(TypeError, match="binary mode"):
        read_archive(io.StringIO("x"))
    with pytest.raises(TypeError, match="binary mode"):
        write_archive(io.StringIO(), "K", {}, {})
    with pytest.raises(TypeError, match="path or a binary file object"):
        read_archive(42)
    closed = io.BytesIO(valid_archive())
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        read_archive(closed)
    with open(tmp_path / "w", "wb") as f:
        with pytest.raises(TypeError, match="not open for reading"):
            read_archive(f)
    with pytest.raises(TypeError, match="max_bytes"):
        read_archive(io.BytesIO(valid_archive()), max_bytes=1.5)


def test_the_format_as_documented():
    data = valid_archive()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        expected = ["fusedmlp.json"] + [f"arrays/{n}.npy" for n in model_arrays()]
        assert [i.filename for i in infos] == expected
        assert infos[0].compress_type == zipfile.ZIP_DEFLATED  # the header
        assert {i.compress_type for i in infos[1:]} == {zipfile.ZIP_STORED}  # the arrays
        header = json.loads(zf.read("fusedmlp.json").decode("utf-8"))
        for name, array in model_arrays().items():
            member = io.BytesIO(zf.read(f"arrays/{name}.npy"))
            npy = np.lib.format.read_array(member, allow_pickle=False)
            assert npy.tobytes() == array.tobytes()
    assert header == describe(io.BytesIO(data))
    assert list(header) == [
        "format", "format_version", "fusedmlp_version", "kind", "meta", "manifest"
    ]
    assert header["format"] == "fusedmlp-model"
    assert header["format_version"] == FORMAT_VERSION == 1
    assert header["fusedmlp_version"] == fusedmlp.__version__
    assert header["kind"] == "MLPClassifier"
    assert header["meta"] == META
    for name, array in model_arrays().items():
        assert header["manifest"][name] == {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "nbytes": array.nbytes,
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    # Saving the same model twice gives the same bytes.
    again = io.BytesIO()
    write_archive(again, "MLPClassifier", META, model_arrays())
    assert again.getvalue() == data


def test_describe_reads_the_header_only(tmp_path):
    members = zip_members(valid_archive())
    members["arrays/coefs_0.npy"] = members["arrays/coefs_0.npy"][:-8] + b"\x00" * 8
    damaged = build_zip(members)
    header = describe(io.BytesIO(damaged))
    assert header["kind"] == "MLPClassifier"
    assert header["manifest"]["coefs_0"]["shape"] == [20, 30]
    with pytest.raises(FileFormatError, match="checksum of array 'coefs_0' does not match"):
        read_archive(io.BytesIO(damaged))
    path = tmp_path / "m.fmlp"
    path.write_bytes(edited(lambda h: h.update(format_version=2)))
    with pytest.raises(FileFormatError, match="upgrade fusedmlp"):
        describe(path)


# ---- what the writer refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, meta, arrays, error, match",
    [
        (3, {}, {}, TypeError, "kind must be a str"),
        ("", {}, {}, ValueError, "kind must not be empty"),
        ("K", [], {}, TypeError, "meta must be a dict"),
        ("K", {"tol": np.float64(1e-4)}, {}, TypeError, r"meta\['tol'\] is of type numpy.float64"),
        ("K", {"n": np.int64(3)}, {}, TypeError, r"meta\['n'\] is of type numpy.int64"),
        ("K", {"sizes": (100,)}, {}, TypeError, r"meta\['sizes'\] is of type builtins.tuple"),
        ("K", {"a": {"b": [1, object()]}}, {}, TypeError, r"meta\['a'\]\['b'\]\[1\]"),
        ("K", {"a": {1: 2}}, {}, TypeError, r"meta\['a'\] has the key 1"),
        ("K", {"tol": float("nan")}, {}, ValueError, r"meta\['tol'\] is nan.*NaN or infinity"),
        ("K", {"x": [float("-inf")]}, {}, ValueError, r"meta\['x'\]\[0\] is -inf"),
        ("K", {"deep": json.loads("[" * 80 + "]" * 80)}, {}, ValueError, "nests more than 64"),
        ("K", {}, {"a": [1, 2]}, TypeError, r"arrays\['a'\] is a builtins.list"),
        ("K", {}, {"a": np.ma.masked_array([1, 2])}, TypeError, "mask"),
        ("K", {}, {"a": np.array([None, 1], dtype=object)}, TypeError, "has an object dtype"),
        ("K", {}, {"a": np.zeros(2, "i4,f8")}, TypeError, r"arrays\['a'\] has a structured dtype"),
        ("K", {}, {"a": np.zeros(2, np.float16)}, TypeError, r"arrays\['a'\] has dtype float16"),
        ("K", {}, {"a": np.zeros(2, np.complex128)}, TypeError, "has dtype complex128"),
        ("K", {}, {"a": np.zeros(2, "datetime64[s]")}, TypeError, "has dtype datetime64"),
        ("K", {}, {"a": np.zeros(2, "V4")}, TypeError, r"arrays\['a'\] has dtype"),
        ("K", {}, {"../evil": np.zeros(2)}, ValueError, "array name '../evil' is not allowed"),
        ("K", {}, {"a/b": np.zeros(2)}, ValueError, "is not allowed"),
        ("K", {}, {".hidden": np.zeros(2)}, ValueError, "is not allowed"),
        ("K", {}, {"": np.zeros(2)}, ValueError, "is not allowed"),
        ("K", {}, {"x" * 129: np.zeros(2)}, ValueError, "is not allowed"),
        ("K", {}, {3: np.zeros(2)}, TypeError, "array names must be str"),
    ],
)
def test_writer_refuses_what_cannot_round_trip(kind, meta, arrays, error, match):
    with pytest.raises(error, match=match):
        write_archive(io.BytesIO(), kind, meta, arrays)


# ---- atomic writes ------------------------------------------------------------------------


def test_a_refused_write_leaves_the_target_untouched(tmp_path):
    path = tmp_path / "model.fmlp"
    write_archive(path, "MLPClassifier", META, model_arrays())
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"meta\['bad'\]"):
        write_archive(path, "MLPClassifier", {"bad": object()}, model_arrays())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.fmlp"]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [True, False])
def test_a_write_failing_midway_leaves_the_target_untouched(tmp_path, monkeypatch, error, existing):
    path = tmp_path / "model.fmlp"
    if existing:
        write_archive(path, "MLPClassifier", META, model_arrays())
    before = sorted(os.listdir(tmp_path)), path.read_bytes() if existing else None
    calls = []

    def failing_write_array(fp, array, **kwargs):
        calls.append(1)
        fp.write(b"\x93NUMPY partial")
        if len(calls) == 3:
            raise error

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(type(error)):
        write_archive(path, "MLPClassifier", META, model_arrays())
    assert len(calls) == 3
    assert (sorted(os.listdir(tmp_path)), path.read_bytes() if existing else None) == before


def test_writing_into_a_missing_directory_or_onto_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_archive(tmp_path / "nope" / "m.fmlp", "K", {}, {})
    with pytest.raises(IsADirectoryError):
        write_archive(tmp_path, "K", {}, {})
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_file_modes_follow_the_umask_and_survive_a_replace(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "m.fmlp"
        write_archive(path, "K", {}, {})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o600)
        write_archive(path, "K", {}, {})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(umask)


# ---- fuzz: truncations and bit flips ------------------------------------------------------


def truncation_offsets(n):
    return sorted(set(range(0, n, max(1, n // 50))) | set(range(64)) | set(range(n - 64, n)))


def test_every_truncation_is_refused():
    data = valid_archive()
    for cut in truncation_offsets(len(data)):
        assert outcome(data[:cut]) == "refused", cut


def flip_positions(data, seed=0):
    """~300 bit positions: spread over the file, inside the JSON and each array's compressed
    data, and in the first member's timestamp (which no reader looks at)."""
    rng = np.random.default_rng(seed)
    spans = member_spans(data)
    positions = list(rng.integers(0, len(data) * 8, 200))
    for name, (_, start, end) in spans.items():
        count = 30 if name == "fusedmlp.json" else 8
        positions += list(rng.integers(start * 8, end * 8, count))
    first_offset = spans["fusedmlp.json"][0]
    positions += [(first_offset + 10) * 8 + bit for bit in (0, 5, 11)]  # mod time
    return [int(p) for p in positions]


def flip(data, bit):
    out = bytearray(data)
    bit = int(bit)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_bit_flips_are_refused_or_harmless():
    data = valid_archive()
    spans = member_spans(data)
    results = {bit: outcome(flip(data, bit)) for bit in flip_positions(data)}
    assert len(results) > 280
    first_offset = spans["fusedmlp.json"][0]
    for bit in (0, 5, 11):
        assert results[(first_offset + 10) * 8 + bit] == "ok"
    inside = [
        bit for bit in results
        if any(start * 8 <= bit < (end - 1) * 8 for _, start, end in spans.values())
    ]
    # Inside compressed data only the last byte's padding bits could be harmless.
    assert all(results[bit] == "refused" for bit in inside)
    assert sum(r == "refused" for r in results.values()) > 0.8 * len(results)


# ---- fuzz: hand-edited JSON ---------------------------------------------------------------


def _drop(key):
    return lambda h: h.pop(key)


def _set(key, value):
    return lambda h: h.update({key: value})


def _entry(name, key, value):
    return lambda h: h["manifest"][name].update({key: value})


def _manifest(change):
    return lambda h: change(h["manifest"])


NEWER = r"written by format version 2 \(fusedmlp 0.1.0\); this fusedmlp \(.*\) reads version 1 "
NOT_ALLOWED = "which no fusedmlp model holds"
HAND_EDITS = {
    "newer version": (_set("format_version", 2), NEWER + r"\(upgrade fusedmlp\)"),
    "version zero": (_set("format_version", 0), "format_version 0 does not exist"),
    "version as str": (_set("format_version", "1"), "format_version is '1', not an integer"),
    "version as bool": (_set("format_version", True), "not an integer"),
    "version as float": (_set("format_version", 1.0), "not an integer"),
    "other format": (_set("format", "sk-pickle"), "names the format 'sk-pickle', not 'fusedmlp-"),
    "no format": (_drop("format"), "names no format"),
    "no meta": (_drop("meta"), "has no 'meta'"),
    "no manifest": (_drop("manifest"), "has no 'manifest'"),
    "no fusedmlp_version": (_drop("fusedmlp_version"), "has no 'fusedmlp_version'"),
    "kind not a str": (_set("kind", 3), "'kind' in fusedmlp.json is a JSON int, not a str"),
    "kind empty": (_set("kind", ""), "'kind' in fusedmlp.json is empty"),
    "meta not a dict": (_set("meta", [1, 2]), "'meta' in fusedmlp.json is a JSON list, not a dict"),
    "meta too deep": (_set("meta", json.loads('{"a":' * 70 + "1" + "}" * 70)), "more than 64"),
    "meta infinity": (lambda h: h["meta"].update(tol=float("inf")), "Infinity is not JSON"),
    "manifest a list": (_set("manifest", []), "'manifest' in fusedmlp.json is a JSON list"),
    "shape transposed": (
        _entry("coefs_0", "shape", [30, 20]),
        r"stored with shape \(20, 30\) but the manifest says \(30, 20\)",
    ),
    "shape disagrees with nbytes": (_entry("coefs_0", "shape", [20, 31]), "make 4960"),
    "shape negative": (_entry("coefs_0", "shape", [-20, -30]), "not a list of sizes"),
    "shape a str": (_entry("coefs_0", "shape", "20x30"), "not a list of sizes"),
    "too many dims": (_entry("empty", "shape", [0] * 33), "not a list of sizes"),
    "dtype object": (_entry("coefs_0", "dtype", "|O"), "'|O'.*object arrays are never loaded"),
    "dtype pickle-ish": (_entry("coefs_0", "dtype", "O8"), "object arrays are never loaded"),
    "dtype structured": (_entry("coefs_0", "dtype", [["a", "<f8"]]), NOT_ALLOWED),
    "dtype float16": (_entry("coefs_0", "dtype", "<f2"), NOT_ALLOWED),
    "dtype big-endian": (_entry("coefs_0", "dtype", ">f8"), NOT_ALLOWED),
    "dtype too wide": (_entry("empty", "dtype", "<U999999999"), NOT_ALLOWED),
    "bytes too wide": (_entry("empty", "dtype", "|S2147483648"), NOT_ALLOWED),
    "dtype same size": (_entry("coefs_0", "dtype", "<i8"), "stored as '<f8' but the manifest"),
    "dtype other size": (_entry("coefs_0", "dtype", "<f4"), "make 2400"),
    "nbytes wrong": (_entry("coefs_0", "nbytes", 4801), "4801 bytes"),
    "nbytes huge": (_entry("coefs_0", "nbytes", 10**30), "bytes, but dtype"),
    "sha256 changed": (
        _entry("coefs_0", "sha256", "0" * 64),
        "checksum of array 'coefs_0' does not match: the file is damaged or was edited",
    ),
    "sha256 uppercase": (
        _manifest(lambda m: m["mask"].update(sha256=m["mask"]["sha256"].upper())),
        "no valid sha256",
    ),
    "entry removed": (
        _manifest(lambda m: m.pop("mask")),
        "holds array 'mask', which its manifest does not list",
    ),
    "entry added": (
        _manifest(lambda m: m.update(extra=dict(m["mask"]))),
        "array 'extra' is listed in the manifest but missing",
    ),
    "entry key added": (_entry("mask", "order", "C"), r"has unknown keys \['order'\]"),
    "entry key removed": (_manifest(lambda m: m["mask"].pop("nbytes")), r"lacks \['nbytes'\]"),
    "entry traversal": (
        _manifest(lambda m: m.update({"../../x": m.pop("mask")})),
        "array named '../../x', which is not allowed",
    ),
}


@pytest.mark.parametrize("edit, match", HAND_EDITS.values(), ids=HAND_EDITS.keys())
def test_hand_edited_json_is_refused(edit, match):
    data = edited(edit)
    with pytest.raises(FileFormatError, match=match):
        read_archive(io.BytesIO(data))


RAW_HEADERS = {
    "invalid JSON": (b'{"format": "fusedmlp-model",', "is not valid JSON"),
    "not UTF-8": (b'{"format": "fusedmlp-model\xff"}', "is not valid JSON"),
    "a list": (b"[1, 2]", "holds a JSON list, not an object"),
    "duplicate key": (b'{"format": 1, "format": 1}', "the key 'format' appears twice"),
    "NaN": (b'{"x": NaN}', "NaN is not JSON"),
    "deep": (b"[" * 100000 + b"]" * 100000, "nests too deeply|not valid JSON"),
    "huge int": (b'{"format_version": ' + b"9" * 5000 + b"}", "not valid JSON|names no format"),
    "empty": (b"", "not valid JSON"),
}


@pytest.mark.parametrize("raw, match", RAW_HEADERS.values(), ids=RAW_HEADERS.keys())
def test_unparsable_headers_are_refused(raw, match):
    members = zip_members(valid_archive())
    members["fusedmlp.json"] = raw
    with pytest.raises(FileFormatError, match=match):
        read_archive(io.BytesIO(build_zip(members)))
    with pytest.raises(FileFormatError, match=match):
        describe(io.BytesIO(build_zip(members)))


def test_an_overflowing_float_in_meta_is_refused():
    members = zip_members(valid_archive())
    text = members["fusedmlp.json"].decode()
    assert '"alpha": 0.0001' in text
    members["fusedmlp.json"] = text.replace('"alpha": 0.0001', '"alpha": 1e999').encode()
    with pytest.raises(FileFormatError, match=r"meta\['alpha'\] is inf"):
        read_archive(io.BytesIO(build_zip(members)))


def test_unknown_top_level_keys_are_ignored_at_this_version_only():
    data = edited(_set("training_log", {"added": "by a later release"}))
    assert outcome(data) == "ok"
    assert describe(io.BytesIO(data))["training_log"] == {"added": "by a later release"}

    def newer(header):
        header.update(format_version=FORMAT_VERSION + 1, training_log={})

    message = r"upgrade fusedmlp.*keys this version does not know: \['training_log'\]"
    with pytest.raises(FileFormatError, match=message):
        read_archive(io.BytesIO(edited(newer)))


# ---- crafted archives: zip bombs, traversal, odd members ---------------------------------


def test_a_bomb_member_is_refused_before_it_is_decompressed(monkeypatch):
    members = zip_members(valid_archive())
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(8 << 20), allow_pickle=False)  # 64 MiB of zeros
    members["arrays/coefs_0.npy"] = buf.getvalue()
    bomb = build_zip(members)
    assert len(bomb) < 200_000
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    message = "declares 67108992 bytes, but array 'coefs_0' takes 4800"
    with pytest.raises(FileFormatError, match=message):
        read_archive(io.BytesIO(bomb))
    assert opened == ["fusedmlp.json"]


def test_a_declared_size_beyond_deflate_is_refused():
    data = valid_archive()
    entry = central_entry(data, "arrays/coefs_1.npy")
    for size in (0xFFFFFFF0, 10**9):
        with pytest.raises(FileFormatError, match="more than its compression can produce"):
            read_archive(io.BytesIO(patched(data, entry + 24, "<I", size)))


def test_an_honest_big_model_respects_max_bytes():
    zeros = np.zeros(2 << 20)  # 16 MiB
    out = io.BytesIO()
    write_archive(out, "Test", {}, {"zeros": zeros})
    data = out.getvalue()
    message = r"decompresses to \d+ bytes, more than max_bytes=1000000"
    with pytest.raises(FileFormatError, match=message):
        read_archive(io.BytesIO(data), max_bytes=1_000_000)
    _, _, got = read_archive(io.BytesIO(data), max_bytes=20 << 20)
    assert got["zeros"].tobytes() == zeros.tobytes()
    with pytest.raises(FileFormatError, match="more than max_bytes=100 allows: raise max_bytes"):
        read_archive(io.BytesIO(data), max_bytes=100)


def test_members_sharing_compressed_data_are_refused():
    data = valid_archive()
    spans = member_spans(data)
    shared = spans["arrays/coefs_0.npy"][0]
    entry = central_entry(data, "arrays/coefs_1.npy")
    with pytest.raises(FileFormatError, match="overlaps"):
        read_archive(io.BytesIO(patched(data, entry + 42, "<I", shared)))


@pytest.mark.parametrize(
    "name",
    ["../../evil.npy", "arrays/../../evil.npy", "/etc/passwd", "..\\..\\evil.npy", "C:/evil.npy"],
)
def test_path_traversal_members_are_refused(name):
    members = list(zip_members(valid_archive()).items()) + [(name, b"x")]
    with pytest.raises(FileFormatError, match=r"points outside the archive \(path traversal\)"):
        read_archive(io.BytesIO(build_zip(members)))


def _replace_member(name, change):
    return lambda members: [(n, change(c) if n == name else c) for n, c in members]


ODD_MEMBERS = {
    "extra file": (lambda m: m + [("README.txt", b"hi")], "unexpected member 'README.txt'"),
    "directory entry": (lambda m: m + [("arrays/", b"")], "unexpected member 'arrays/'"),
    "duplicate array": (lambda m: m + [m[1]], "holds the member 'arrays/coefs_0.npy' twice"),
    "duplicate header": (lambda m: m + [m[0]], "holds the member 'fusedmlp.json' twice"),
    "no header": (lambda m: m[1:], "has no fusedmlp.json"),
    "missing array": (
        lambda m: [(n, c) for n, c in m if n != "arrays/mask.npy"],
        "array 'mask' is listed in the manifest but missing",
    ),
    "trailing bytes": (_replace_member("arrays/mask.npy", lambda c: c + b"\0"), "after its data"),
    "not npy": (
        _replace_member("arrays/mask.npy", lambda c: b"garbage!" + c[8:]), "not in .npy format"
    ),
    "npy version 3": (
        _replace_member("arrays/mask.npy", lambda c: c[:6] + b"\x03\x00" + c[8:]),
        "format version 3.0",
    ),
}


@pytest.mark.parametrize("change, match", ODD_MEMBERS.values(), ids=ODD_MEMBERS.keys())
def test_odd_members_are_refused(change, match):
    members = change(list(zip_members(valid_archive()).items()))
    with pytest.raises(FileFormatError, match=match):
        read_archive(io.BytesIO(build_zip(members)))


def npy_with_header(header_text, data):
    header = header_text.encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@pytest.mark.parametrize(
    "header_text, match",
    [
        ("{'descr': '|O', 'fortran_order': False, 'shape': (17,), }", "stored as '|O'"),
        ("__import__('os').system('echo pwned')", "unreadable .npy header"),
        ("{'descr': '|b1', 'fortran_order': 'no', 'shape': (17,), }", "malformed .npy header"),
        ("{'descr': '|b1', 'fortran_order': False, 'shape': (17,), 'x': 1}", "malformed"),
        ("(" * 300 + ")" * 300, "unreadable .npy header"),
        ("[1, 2]", "malformed .npy header"),
    ],
)
def test_crafted_npy_headers_are_refused_without_evaluation(header_text, match):
    members = zip_members(valid_archive())
    members["arrays/mask.npy"] = npy_with_header(header_text, model_arrays()["mask"].tobytes())
    with pytest.raises(FileFormatError, match=match):
        read_archive(io.BytesIO(build_zip(members)))


def test_a_fortran_ordered_npy_member_loads_c_ordered():
    """Not written by fusedmlp, but a valid .npy: the checksum covers the stored bytes."""
    members = zip_members(valid_archive())
    coefs = model_arrays()["coefs_0"]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asfortranarray(coefs), allow_pickle=False)
    members["arrays/coefs_0.npy"] = buf.getvalue()
    header = json.loads(members["fusedmlp.json"])
    header["manifest"]["coefs_0"]["sha256"] = hashlib.sha256(coefs.T.tobytes()).hexdigest()
    members["fusedmlp.json"] = json.dumps(header).encode()
    _, _, got = read_archive(io.BytesIO(build_zip(members)))
    assert got["coefs_0"].flags.c_contiguous
    assert got["coefs_0"].tobytes() == coefs.tobytes()


@pytest.mark.parametrize("what", ["bool", "unicode"])
def test_values_no_dtype_can_hold_are_refused(what):
    members = zip_members(valid_archive())
    header = json.loads(members["fusedmlp.json"])
    name, raw = ("mask", b"\x02" * 17) if what == "bool" else ("classes_", b"\xff" * 48)
    array = np.frombuffer(raw, header["manifest"][name]["dtype"])
    buf = io.BytesIO()
    shape = header["manifest"][name]["shape"]
    np.lib.format.write_array(buf, array.reshape(shape), allow_pickle=False)
    members[f"arrays/{name}.npy"] = buf.getvalue()
    header["manifest"][name]["sha256"] = hashlib.sha256(raw).hexdigest()
    members["fusedmlp.json"] = json.dumps(header).encode()
    with pytest.raises(FileFormatError, match="bools other than 0 and 1|beyond Unicode"):
        read_archive(io.BytesIO(build_zip(members)))


def test_other_compression_methods_and_encryption_are_refused():
    members = zip_members(valid_archive())
    with pytest.raises(FileFormatError, match="compression method 12"):
        read_archive(io.BytesIO(build_zip(members, zipfile.ZIP_BZIP2)))
    stored = build_zip(members, zipfile.ZIP_STORED)
    assert outcome(stored) == "ok"
    data = valid_archive()
    entry = central_entry(data, "arrays/mask.npy")
    flags = struct.unpack_from("<H", data, entry + 8)[0]
    with pytest.raises(FileFormatError, match="is encrypted"):
        read_archive(io.BytesIO(patched(data, entry + 8, "<H", flags | 1)))


# ---- files that are not models ------------------------------------------------------------


def test_files_that_are_not_models(tmp_path):
    empty = tmp_path / "empty.fmlp"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="the file is empty"):
        read_archive(empty)
    with pytest.raises(FileFormatError, match="is a directory"):
        read_archive(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        read_archive(tmp_path / "missing.fmlp")
    assert type(info.value) is FileNotFoundError
    rng = np.random.default_rng(3)
    for size in (1, 3, 4, 21, 22, 100, 5000):
        junk = tmp_path / f"random{size}"
        junk.write_bytes(rng.bytes(size))
        with pytest.raises(FileFormatError):
            read_archive(junk)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95" + rng.bytes(64))
    with pytest.raises(FileFormatError, match="looks like a pickle"):
        read_archive(pickled)
    npz = tmp_path / "weights.npz"
    np.savez(npz, w=np.zeros(3))
    with pytest.raises(FileFormatError, match="unexpected member 'w.npy'"):
        read_archive(npz)
    truncated = tmp_path / "truncated.fmlp"
    truncated.write_bytes(valid_archive()[: len(valid_archive()) // 2])
    with pytest.raises(FileFormatError, match=r"truncated\.fmlp: the file is truncated"):
        read_archive(truncated)
    with pytest.raises(FileFormatError, match="the file is truncated"):
        describe(truncated)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileFormatError, match="not a regular file"):
        read_archive(fifo)


def test_errors_chain_their_cause():
    data = valid_archive()
    with pytest.raises(FileFormatError) as info:
        read_archive(io.BytesIO(data[:100]))
    assert isinstance(info.value.__cause__, zipfile.BadZipFile)
    assert isinstance(info.value, ValueError)


# ---- the fuzz in a child interpreter ------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import io, pathlib, sys
    import numpy as np
    from fusedmlp._archive import FileFormatError, read_archive

    folder = pathlib.Path(sys.argv[1])
    kind, meta, arrays = read_archive(folder / "original.fmlp")
    results = []
    for path in sorted(folder.glob("fuzz*.fmlp")):
        try:
            got = read_archive(path)
        except FileFormatError:
            results.append("refused")
            continue
        same = got[0] == kind and got[1] == meta and list(got[2]) == list(arrays) and all(
            got[2][n].dtype == a.dtype and got[2][n].shape == a.shape
            and got[2][n].tobytes() == a.tobytes() for n, a in arrays.items())
        results.append("ok" if same else "DIFFERENT")
    print(" ".join(results))
    sys.exit(0 if "DIFFERENT" not in results else 2)
    """
)


def fuzzed_files(count=200, seed=7):
    data = valid_archive()
    rng = np.random.default_rng(seed)
    files = [data[:cut] for cut in rng.choice(truncation_offsets(len(data)), 60, replace=False)]
    files += [flip(data, bit) for bit in rng.choice(flip_positions(data, seed), 100, replace=False)]
    while len(files) < count:  # overwrite a short run with random bytes
        start = int(rng.integers(0, len(data) - 16))
        run = int(rng.integers(1, 16))
        files.append(data[:start] + rng.bytes(run) + data[start + run:])
    return files


def test_fuzz_in_a_child_interpreter_never_crashes_it(tmp_path):
    (tmp_path / "original.fmlp").write_bytes(valid_archive())
    files = fuzzed_files()
    for i, data in enumerate(files):
        (tmp_path / f"fuzz{i:03d}.fmlp").write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr[-3000:]
    results = child.stdout.split()
    assert len(results) == 200
    assert results == [outcome(data) for data in files]
    assert results.count("refused") > 150
