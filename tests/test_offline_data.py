"""docs/offline_data.py fills a scikit-learn data home from which the fetchers the gallery
calls return the offline copies in ../shared/data, with the network blocked."""

import importlib.util
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets
from sklearn.datasets import fetch_california_housing, fetch_openml

from .conftest import DATA_DIR, load_npz

offline_data_path = Path(__file__).resolve().parents[1] / "docs" / "offline_data.py"
spec = importlib.util.spec_from_file_location("offline_data", offline_data_path)
offline_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(offline_data)


class NetworkBlocked(Exception):
    pass


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    missing = [n for n in ("mnist.npz", "fashion_mnist.npz", "california_housing.npz")
               if not (DATA_DIR / n).exists()]
    if missing:
        pytest.skip(f"datasets {missing} are not present in {DATA_DIR}")
    home = tmp_path_factory.mktemp("scikit_learn_data")
    offline_data.build(home, DATA_DIR, log=lambda message: None)
    return home


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkBlocked(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    # Both fetcher modules import these by name.
    monkeypatch.setattr(datasets._openml, "urlopen", refuse)
    monkeypatch.setattr(datasets._base, "urlretrieve", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name, npz", [("mnist_784", "mnist.npz"), ("Fashion-MNIST", "fashion_mnist.npz")])
def test_fetch_openml_returns_the_official_rows(data_home, no_network, name, npz):
    d = load_npz(npz)
    bunch = fetch_openml(name, version=1, as_frame=False, parser="auto", data_home=data_home)
    X, y = bunch.data, bunch.target
    assert X.shape == (70000, 784) and np.issubdtype(X.dtype, np.number)
    np.testing.assert_array_equal(X[:60000], d["X_train"])
    np.testing.assert_array_equal(X[60000:], d["X_test"])
    assert y.dtype == object and {type(label) for label in y} == {str}
    np.testing.assert_array_equal(y, np.concatenate([d["y_train"], d["y_test"]]).astype(str))
    assert bunch.feature_names == [f"pixel{j}" for j in range(1, 785)]
    assert bunch.target_names == ["class"]
    assert bunch.details["name"] == name and bunch.details["version"] == "1"


def test_fetch_openml_by_id_and_active_version_use_the_same_cache(data_home, no_network):
    # Only the metadata: the data file is the one the test above parses.
    from sklearn.datasets._openml import _get_data_description_by_id, _get_data_info_by_name

    openml_home = str(data_home / "openml")
    for name, data_id in [("mnist_784", 554), ("fashion-mnist", 40996)]:
        assert _get_data_info_by_name(name, "active", openml_home)["did"] == data_id
        assert _get_data_info_by_name(name, 1, openml_home)["did"] == data_id
        assert _get_data_description_by_id(data_id, openml_home)["status"] == "active"


def test_fetch_california_housing_returns_the_table(data_home, no_network, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(data_home))
    d = load_npz("california_housing.npz")
    bunch = fetch_california_housing()
    assert bunch.feature_names == d["feature_names"].tolist()
    np.testing.assert_array_equal(bunch.target, d["y"])
    exact = [0, 1, 4, 6, 7]  # MedInc, HouseAge, Population, Latitude, Longitude
    np.testing.assert_array_equal(bunch.data[:, exact], d["X"][:, exact])
    # The averages are the fetcher's own divisions of whole counts; the npz holds them to
    # within 2 units in the last place.
    np.testing.assert_array_max_ulp(bunch.data, d["X"], maxulp=2)
    # The first row as the real download gives it, to the last bit.
    assert bunch.data[0].tolist() == [8.3252, 41.0, 6.984126984126984, 1.0238095238095237, 322.0,
                                      2.5555555555555554, 37.88, -122.23]
    assert bunch.target[0] == 4.526


def test_second_build_writes_nothing(data_home):
    files = {p: p.stat().st_mtime_ns for p in data_home.rglob("*") if p.is_file()}
    status = offline_data.build(data_home, DATA_DIR, log=lambda message: None)
    assert set(status.values()) == {"up to date"}
    assert {p: p.stat().st_mtime_ns for p in data_home.rglob("*") if p.is_file()} == files


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"missing mnist\.npz, fashion_mnist\.npz"):
        offline_data.build(tmp_path / "home", tmp_path / "nowhere")
    assert offline_data.main([str(tmp_path / "home"), "--source", str(tmp_path / "nowhere")]) == 2
    assert "--source" in capsys.readouterr().err
