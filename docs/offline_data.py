"""Fill a scikit-learn data home with the caches its fetchers read, built from local files.

The documentation gallery calls scikit-learn's own fetchers::

    fetch_openml("Fashion-MNIST", version=1, as_frame=False, parser="auto")
    fetch_openml("mnist_784", version=1, as_frame=False, parser="auto")
    fetch_california_housing()

This script writes, from the offline copies in ``../shared/data`` (see its README.md), the
files those calls look for before they go to the network, so that they run without it::

    python docs/offline_data.py DATA_HOME [--source ../shared/data] [--force]
    export SCIKIT_LEARN_DATA=DATA_HOME    # or pass data_home=DATA_HOME to the fetchers

What it writes under DATA_HOME:

- ``openml/openml.org/...``: for OpenML datasets 554 (mnist_784) and 40996 (Fashion-MNIST),
  the gzipped responses ``sklearn.datasets._openml`` caches (name lookup by version and by
  "active" status, description, features, qualities) and the ARFF data file the description
  points to, whose MD5 the description carries. Rows are the official 60000 training images
  followed by the 10000 test images, as on OpenML, so ``X[:60000]`` is the training split.
- ``cal_housing_py3.pkz``: the joblib pickle ``fetch_california_housing`` keeps, holding the
  raw table of the original archive (house value in dollars, counts of rooms, bedrooms,
  population and households) from which the fetcher derives its averages.
- ``fusedmlp_offline_data.json``: what was built from which source, so a second run returns
  at once.

Checked against scikit-learn 1.9.1 with pandas 3.1 (the OpenML cache layout and the ``_py3``
pickle name have not changed since scikit-learn 0.20). With ``parser="auto"`` scikit-learn >= 1.4
reads dense ARFF with pandas, which must be installed: X comes back as int64 (the ARFF holds
integers, as the OpenML files do) and y as the strings '0'..'9'. ``parser="liac-arff"`` gives
float64 X, the same y, and takes ten times as long. The ARFF quotes its labels, which the
OpenML file does not: see ``_arff_chunks``. If a fetch fails to parse a cached file,
scikit-learn deletes it; running this script again restores it.
"""

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import joblib
import numpy as np

# Bump when the bytes written for the same source change, so old caches are rebuilt.
FORMAT_VERSION = 2
MANIFEST_NAME = "fusedmlp_offline_data.json"
CALIFORNIA_PICKLE = "cal_housing_py3.pkz"  # sklearn.datasets._base._pkl_filepath("cal_housing.pkz")
DEFAULT_SOURCE = Path(
    os.environ.get("FUSEDMLP_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclass(frozen=True)
class OpenMLDataset:
    name: str  # as OpenML spells it; scikit-learn lower-cases it for the lookup path
    data_id: int
    file_id: int
    npz: str
    description: str
    original_data_url: str


OPENML_DATASETS = (
    OpenMLDataset(
        name="mnist_784",
        data_id=554,
        file_id=52667,
        npz="mnist.npz",
        description=(
            "**Author**: Yann LeCun, Corinna Cortes, Christopher J.C. Burges  \n"
            "**Source**: [MNIST Website](http://yann.lecun.com/exdb/mnist/)  \n\n"
            "The MNIST database of handwritten digits with 784 features (28x28 pixels, "
            "grey levels 0-255). The first 60,000 examples are the training set and the last "
            "10,000 the test set."
        ),
        original_data_url="http://yann.lecun.com/exdb/mnist/",
    ),
    OpenMLDataset(
        name="Fashion-MNIST",
        data_id=40996,
        file_id=18238735,
        npz="fashion_mnist.npz",
        description=(
            "**Author**: Han Xiao, Kashif Rasul, Roland Vollgraf  \n"
            "**Source**: [Zalando Research](https://github.com/zalandoresearch/fashion-mnist)  \n\n"
            "Fashion-MNIST is a dataset of Zalando's article images: 28x28 grayscale images "
            "(784 pixels, 0-255) in 10 classes (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, "
            "4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot). The first 60,000 "
            "examples are the training set and the last 10,000 the test set."
        ),
        original_data_url="https://github.com/zalandoresearch/fashion-mnist",
    ),
)
OFFLINE_NOTE = "\n\n(Offline copy written by fusedmlp's docs/offline_data.py from {npz}.)"


def build(data_home, source=DEFAULT_SOURCE, force=False, log=print):
    """Writes every cache into ``data_home``; returns {dataset: "built" | "up to date"}."""
    data_home, source = Path(data_home), Path(source)
    needed = [d.npz for d in OPENML_DATASETS] + ["california_housing.npz"]
    missing = [name for name in needed if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"source data not found in {source}: missing {', '.join(missing)}; "
            "pass --source (or set FUSEDMLP_DATA) to the directory holding "
            + ", ".join(needed)
        )
    data_home.mkdir(parents=True, exist_ok=True)
    manifest_path = data_home / MANIFEST_NAME
    manifest = _read_json(manifest_path) or {}
    if manifest.get("format") != FORMAT_VERSION:
        manifest = {"format": FORMAT_VERSION, "datasets": {}}
    status = {}
    for dataset in OPENML_DATASETS:
        start = time.perf_counter()
        entry, built = build_openml(
            data_home, dataset, source / dataset.npz, manifest["datasets"].get(dataset.name), force
        )
        if manifest["datasets"].get(dataset.name) != entry:
            manifest["datasets"][dataset.name] = entry
            _write_json_atomic(manifest_path, manifest)
        status[dataset.name] = "built" if built else "up to date"
        log(f"{dataset.name} (OpenML {dataset.data_id}): {status[dataset.name]} "
            f"in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    built = build_california_housing(data_home, source / "california_housing.npz", force)
    status["california_housing"] = "built" if built else "up to date"
    log(f"california_housing: {status['california_housing']} in {time.perf_counter() - start:.1f} s")
    return status


# ---------------------------------------------------------------- OpenML (fetch_openml)

def openml_cache_path(data_home, url):
    """Where scikit-learn caches ``url``: data_home/openml/openml.org/<url path>.gz
    (sklearn.datasets._openml._get_local_path of _openml_path_from_url); the host is dropped."""
    return Path(data_home) / "openml" / "openml.org" / (urlparse(url).path.lstrip("/") + ".gz")


def openml_urls(dataset):
    """The URLs fetch_openml(name, version=1 or "active") opens, keyed by role."""
    api = "https://www.openml.org/api/v1/json/data"
    by_name = f"{api}/list/data_name/{dataset.name.lower()}/limit/2"
    return {
        "list_version": f"{by_name}/data_version/1",
        "list_active": f"{by_name}/status/active/",
        "description": f"{api}/{dataset.data_id}",
        "features": f"{api}/features/{dataset.data_id}",
        "qualities": f"{api}/qualities/{dataset.data_id}",
        "arff": f"https://api.openml.org/data/v1/download/{dataset.file_id}/{dataset.name}.arff",
    }


def build_openml(data_home, dataset, npz_path, entry, force=False):
    """Writes one OpenML dataset's cache; returns (manifest entry, whether anything was written)."""
    urls = openml_urls(dataset)
    arff_path = openml_cache_path(data_home, urls["arff"])
    source_sha256 = _sha256(npz_path)
    arff_current = (
        not force
        and entry is not None
        and entry.get("source_sha256") == source_sha256
        and arff_path.is_file()
        and arff_path.stat().st_size == entry.get("arff_gz_bytes")
    )
    built = False
    if arff_current:
        md5, counts = entry["arff_md5"], np.asarray(entry["class_counts"])
    else:
        X, y = _load_openml_arrays(npz_path)
        md5 = _write_gzip_atomic(arff_path, _arff_chunks(dataset, X, y))
        counts = np.bincount(y, minlength=10)
        entry = {
            "source": str(npz_path),
            "source_sha256": source_sha256,
            "arff_md5": md5,
            "arff_gz_bytes": arff_path.stat().st_size,
            "class_counts": counts.tolist(),
        }
        built = True
    for role, payload in _openml_json(dataset, urls, md5, counts).items():
        path = openml_cache_path(data_home, urls[role])
        content = json.dumps(payload).encode("utf-8")
        if force or _read_gzip(path) != content:
            _write_gzip_atomic(path, [content])
            built = True
    return entry, built


def _load_openml_arrays(npz_path):
    with np.load(npz_path) as d:
        X = np.concatenate([d["X_train"], d["X_test"]])
        y = np.concatenate([d["y_train"], d["y_test"]])
    if X.shape != (70000, 784) or X.dtype != np.uint8 or y.shape != (70000,) or y.max() > 9:
        raise ValueError(f"{npz_path}: expected uint8 X_train/X_test with 784 columns, "
                         f"70000 rows in all, and labels 0..9; got X {X.shape} {X.dtype}")
    return X, y.astype(np.uint8)


def _arff_chunks(dataset, X, y, rows_per_chunk=10000):
    """The ARFF file as bytes chunks: a header, then one line per image ("0,0,...,255,'7'")."""
    header = [f"% OpenML dataset {dataset.data_id}: {dataset.name}, version 1.",
              "% " + OFFLINE_NOTE.format(npz=dataset.npz).strip(),
              f"@RELATION {dataset.name}", ""]
    header += [f"@ATTRIBUTE pixel{j} NUMERIC" for j in range(1, X.shape[1] + 1)]
    # The labels are quoted ('7'): with pandas >= 3.1, read_csv makes unquoted digits integer
    # categories, on which scikit-learn <= 1.9.1's pandas parser fails (scikit-learn#34892);
    # quoted, both parsers return the strings '0'..'9' on every pandas version.
    header += ["@ATTRIBUTE class {" + ",".join(f"'{c}'" for c in range(10)) + "}", "", "@DATA", ""]
    yield "\n".join(header).encode("ascii")
    # Text of each field with its separator, padded to 4 bytes: codes 0..255 are pixel values
    # followed by ",", codes 256..265 the labels followed by the newline.
    tokens = [f"{v}," for v in range(256)] + [f"'{c}'\n" for c in range(10)]
    table = np.array([list(t.encode().ljust(4, b"\0")) for t in tokens], dtype=np.uint8)
    lengths = np.array([len(t) for t in tokens])
    for start in range(0, len(X), rows_per_chunk):
        codes = np.empty((min(rows_per_chunk, len(X) - start), X.shape[1] + 1), dtype=np.uint16)
        codes[:, :-1] = X[start:start + rows_per_chunk]
        codes[:, -1] = y[start:start + rows_per_chunk]
        codes[:, -1] += 256
        keep = np.arange(4) < lengths[codes][..., None]
        yield table[codes][keep].tobytes()


def _openml_json(dataset, urls, md5, counts):
    """The API responses, shaped like OpenML's (see sklearn/datasets/tests/data/openml)."""
    n_features = 784
    qualities = {
        "MajorityClassSize": counts.max(),
        "MinorityClassSize": counts.min(),
        "NumberOfClasses": 10,
        "NumberOfFeatures": n_features + 1,
        "NumberOfInstances": counts.sum(),
        "NumberOfInstancesWithMissingValues": 0,
        "NumberOfMissingValues": 0,
        "NumberOfNumericFeatures": n_features,
        "NumberOfSymbolicFeatures": 1,
    }
    quality = [{"name": k, "value": f"{float(v):.1f}"} for k, v in qualities.items()]
    listing = {"data": {"dataset": [{
        "did": dataset.data_id, "name": dataset.name, "version": 1, "status": "active",
        "format": "ARFF", "file_id": dataset.file_id, "quality": quality,
    }]}}
    description = {"data_set_description": {
        "id": str(dataset.data_id),
        "name": dataset.name,
        "version": "1",
        "description": dataset.description + OFFLINE_NOTE.format(npz=dataset.npz),
        "format": "ARFF",
        "url": urls["arff"],
        "file_id": str(dataset.file_id),
        "default_target_attribute": "class",
        "version_label": "1",
        "visibility": "public",
        "original_data_url": dataset.original_data_url,
        "status": "active",
        "md5_checksum": md5,
    }}
    plain = {"is_target": "false", "is_ignore": "false", "is_row_identifier": "false",
             "number_of_missing_values": "0"}
    features = [{"index": str(j), "name": f"pixel{j + 1}", "data_type": "numeric", **plain}
                for j in range(n_features)]
    features.append({
        "index": str(n_features), "name": "class", "data_type": "nominal",
        "nominal_values": json.dumps([str(c) for c in range(10)]), **plain, "is_target": "true",
    })
    return {
        "list_version": listing,
        "list_active": listing,
        "description": description,
        "features": {"data_features": {"feature": features}},
        "qualities": {"data_qualities": {"quality": quality}},
    }


# ------------------------------------------------- California housing (fetch_california_housing)

def california_raw_table(X, y):
    """Inverts fetch_california_housing: from its (data, target) back to the raw columns it
    caches, [house value in $, MedInc, HouseAge, rooms, bedrooms, population, households,
    latitude, longitude].

    The archive holds whole counts and whole dollars, so rounding recovers them exactly, and
    the fetcher's divisions then give the correctly rounded averages the real download gives.
    """
    households = np.round(X[:, 4] / X[:, 5])
    return np.column_stack([
        np.round(y * 100000.0),
        X[:, 0], X[:, 1],
        np.round(X[:, 2] * households), np.round(X[:, 3] * households),
        X[:, 4], households,
        X[:, 6], X[:, 7],
    ])


def california_from_raw(raw):
    """What fetch_california_housing computes from its cached table: (data, target)."""
    data = raw[:, 1:].copy()
    data[:, 2] /= data[:, 5]
    data[:, 3] /= data[:, 5]
    data[:, 5] = data[:, 4] / data[:, 5]
    return data, raw[:, 0] / 100000.0


def build_california_housing(data_home, npz_path, force=False):
    """Writes cal_housing_py3.pkz unless a valid one is there; returns whether it wrote."""
    with np.load(npz_path) as d:
        X, y, names = d["X"], d["y"], [str(n) for n in d["feature_names"]]
    expected_names = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                      "Latitude", "Longitude"]
    if names != expected_names:
        raise ValueError(f"{npz_path}: feature_names {names}, expected {expected_names}")
    raw = california_raw_table(X, y)
    data, target = california_from_raw(raw)
    # The npz may differ from the fetcher's averages in the last bits; anything more means
    # the inversion does not hold for this file.
    if not (np.allclose(data, X, rtol=1e-14, atol=0) and np.allclose(target, y, rtol=1e-14, atol=0)):
        raise ValueError(f"{npz_path}: not the table fetch_california_housing returns")
    path = Path(data_home) / CALIFORNIA_PICKLE
    if not force and path.is_file():
        try:
            if np.array_equal(joblib.load(path), raw):
                return False
        except Exception:
            pass  # unreadable or foreign: rewrite it
    with _replacing(path) as tmp:
        joblib.dump(raw, tmp, compress=6)  # as the fetcher writes it
    return True


# ------------------------------------------------------------------------------- file helpers

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _replacing(path):
    """Yields a temporary name beside ``path`` that replaces it once the block succeeds, so
    a reader or a concurrent run never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_gzip_atomic(path, chunks):
    """Gzips the byte chunks to ``path``; returns the MD5 of the uncompressed bytes, the
    checksum OpenML descriptions carry."""
    md5 = hashlib.md5()
    # Level 4 compresses the Fashion-MNIST ARFF 5x faster than level 6, into a 9% larger file,
    # and 10x faster than gzip's default 9.
    with _replacing(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=4, mtime=0) as out:
        for chunk in chunks:
            md5.update(chunk)
            out.write(chunk)
    return md5.hexdigest()


def _read_gzip(path):
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError):
        return None


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path, obj):
    with _replacing(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_home", type=Path,
                        help="scikit-learn data home to fill (then set SCIKIT_LEARN_DATA to it)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"directory of the npz files (default: {DEFAULT_SOURCE})")
    parser.add_argument("--force", action="store_true", help="rewrite every file")
    args = parser.parse_args(argv)
    try:
        build(args.data_home, args.source, force=args.force)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"export SCIKIT_LEARN_DATA={args.data_home.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
