"""Data sources in their real formats, validation errors, subsets and the tf.data pipelines."""
import numpy as np
import pytest

from bnlib import data
from bnlib.config import RunConfig
from conftest import make_arrays, write_batches_folder, write_tarball


def assert_same(dataset, arrays):
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(dataset, key), arrays[key])


def test_npz_archive(tiny_npz):
    loaded = data.load("cifar10", tiny_npz)
    assert_same(loaded, make_arrays())
    assert loaded.source["kind"] == "explicit path"
    assert "not verified" in loaded.description and loaded.source["n_train"] == 60


def test_batches_folder_and_parent_folder(tmp_path):
    arrays = make_arrays()
    folder = write_batches_folder(tmp_path / "cifar-10-batches-py", arrays)
    assert_same(data.load("cifar10", folder), arrays)
    assert_same(data.load("cifar10", tmp_path), arrays)  # the folder that contains it


def test_official_tarball_checksum(tmp_path, monkeypatch):
    arrays = make_arrays()
    tarball = write_tarball(tmp_path / "cifar-10-python.tar.gz", arrays)
    with pytest.raises(data.DataError, match="md5 .* expected c58f30108f718f92721af3b95e74349a"):
        data.load("cifar10", tarball)
    # with the checksum of our fake tarball registered, it loads
    monkeypatch.setitem(data.TARBALLS, "cifar10",
                        ("cifar-10-python.tar.gz", data.md5sum(tarball), "cifar-10-batches-py"))
    assert_same(data.load("cifar10", tarball), arrays)


def test_cifar100_folder_and_tarball(tmp_path, monkeypatch):
    """CIFAR-100's own layout: one train and one test pickle with fine labels 0-99, in a
    cifar-100-python folder or the official tarball (checked against its own md5)."""
    arrays = make_arrays(n_train=200, n_test=100, num_classes=100)
    folder = write_batches_folder(tmp_path / "cifar-100-python", arrays, dataset="cifar100")
    loaded = data.load("cifar100", folder)
    assert_same(loaded, arrays)
    assert loaded.num_classes == 100 and loaded.source["dataset"] == "cifar100"
    with pytest.raises(data.DataError, match="not an extracted cifar-100-python folder .missing train, test"):
        data.load("cifar100", write_batches_folder(tmp_path / "ten" / "cifar-10-batches-py", make_arrays()))
    tarball = write_tarball(tmp_path / "tar" / "cifar-100-python.tar.gz", arrays, "cifar-100-python", "cifar100")
    with pytest.raises(data.DataError, match="expected eb9058c3a382ffc7106e4002c42a8d85"):
        data.load("cifar100", tarball)
    monkeypatch.setitem(data.TARBALLS, "cifar100",
                        ("cifar-100-python.tar.gz", data.md5sum(tarball), "cifar-100-python"))
    assert_same(data.load("cifar100", tarball), arrays)
    monkeypatch.setenv("BNLIB_CIFAR100", str(folder))
    assert data.load("cifar100").source["kind"] == "$BNLIB_CIFAR100"


def test_jpeg_archive(tmp_path):
    from io import BytesIO

    from PIL import Image

    arrays = make_arrays(n_train=10, n_test=10)
    flat = np.full((32, 32, 3), 200, np.uint8)  # a flat image survives JPEG exactly
    archive = {}
    for split in ("train", "test"):
        blobs = []
        for _ in range(10):
            buffer = BytesIO()
            Image.fromarray(flat).save(buffer, format="JPEG", quality=95)
            blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
        archive[f"{split}_jpeg"] = np.concatenate(blobs)
        archive[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
        archive[f"y_{split}"] = arrays[f"y_{split}"]
    np.savez(tmp_path / "jpeg.npz", **archive)
    loaded = data.load("cifar10", tmp_path / "jpeg.npz")
    assert loaded.x_train.shape == (10, 32, 32, 3)
    assert np.abs(loaded.x_train.astype(int) - 200).max() <= 2


def test_environment_variable_is_used(tiny_npz, monkeypatch):
    monkeypatch.setenv("BNLIB_CIFAR10", str(tiny_npz))
    loaded = data.load("cifar10")
    assert loaded.source["kind"] == "$BNLIB_CIFAR10" and loaded.x_train.shape[0] == 60


def test_keras_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("BNLIB_CIFAR10", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    arrays = make_arrays()
    write_batches_folder(tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py", arrays)
    loaded = data.load("cifar10")
    assert loaded.source["kind"] == "keras cache" and "original" in loaded.description
    assert_same(loaded, arrays)


def test_offline_with_nothing_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("BNLIB_CIFAR10", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(dataset):
        raise OSError("no network")

    monkeypatch.setattr(data, "_keras_download", no_network)
    with pytest.raises(data.DataError) as error:
        data.load("cifar10")
    message = str(error.value)
    assert "\n" not in message
    assert "data_path" in message and "$BNLIB_CIFAR10" in message and "Keras cache" in message


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.update(x_train=a["x_train"][:, :16]), "N x 32 x 32 x 3"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "uint8"),
    (lambda a: a.update(y_test=a["y_test"] + 5), r"labels in \[0, 10\)"),
    (lambda a: a.update(y_train=a["y_train"][:10]), "must match"),
    (lambda a: a.pop("y_test"), "lacks the keys"),
])
def test_malformed_archives_are_one_line_errors(tmp_path, change, fragment):
    arrays = make_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(data.DataError, match=fragment) as error:
        data.load("cifar10", tmp_path / "bad.npz")
    assert "\n" not in str(error.value)


def test_missing_path(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load("cifar10", tmp_path / "nowhere.npz")
    monkeypatch.setenv("BNLIB_CIFAR10", str(tmp_path / "gone.npz"))  # the variable's path: named as such
    with pytest.raises(data.DataError, match=r"gone.npz \(\$BNLIB_CIFAR10\) does not exist"):
        data.load("cifar10")


def test_locate_names_the_path_a_load_reads(tmp_path, monkeypatch):
    archive = tmp_path / "c.npz"
    archive.touch()
    monkeypatch.delenv("BNLIB_CIFAR10", raising=False)
    assert data.locate("cifar10") == (None, "")                 # the Keras cache and download come next
    assert data.locate("cifar10", archive) == (archive, "explicit path")
    monkeypatch.setenv("BNLIB_CIFAR10", str(archive))
    assert data.locate("cifar10") == (archive, "$BNLIB_CIFAR10")
    assert data.locate("cifar10", tmp_path) == (tmp_path, "explicit path")  # explicit wins


def test_subset_and_validation_split():
    arrays = make_arrays(n_train=100)
    x, y = data.class_balanced_subset(arrays["x_train"], arrays["y_train"], 3)
    assert np.bincount(y).tolist() == [3] * 10
    with pytest.raises(data.DataError, match="use at most 10"):
        data.class_balanced_subset(arrays["x_train"], arrays["y_train"], 11)
    x_tr, y_tr, x_val, y_val = data.split_validation(arrays["x_train"], arrays["y_train"], 0.2, seed=1)
    assert len(x_val) == 20 and len(x_tr) == 80
    assert not set(map(bytes, x_val)) & set(map(bytes, x_tr))
    for fraction, held_out in ((0.004, 0), (0.996, 100)):   # a split that rounds to none or all
        with pytest.raises(data.DataError, match=f"holds out {held_out} of 100 training images; use a fraction between 0.01"):
            data.split_validation(arrays["x_train"], arrays["y_train"], fraction)


def test_prepare_records_what_was_used(tiny_npz):
    config = RunConfig(data_path=str(tiny_npz), train_per_class=4, test_per_class=2, validation_split=0.25)
    splits = data.prepare(config)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (30, 10, 20)
    assert splits.source["train_used"] == 30 and splits.source["validation_used"] == 10
    assert splits.mean.shape == (3,) and np.all(splits.std > 0)
    fed = np.concatenate([x for x, _ in batches(data.eval_pipeline(splits.x_test, splits.y_test, 8,
                                                                   splits.mean, splits.std))])
    np.testing.assert_allclose(splits.normalised_test_images(), fed, rtol=1e-6, atol=1e-6)
    assert splits.normalised_test_images().dtype == np.float32


def batches(stream):
    return [(x.numpy(), y.numpy()) for x, y in stream]


def test_train_pipeline_is_a_function_of_seed_and_epoch():
    arrays = make_arrays(n_train=50)
    mean, std = data.channel_stats(arrays["x_train"])
    make = lambda **kw: batches(data.train_pipeline(arrays["x_train"], arrays["y_train"], 16, mean, std, **kw))
    full = make(seed=3, epochs=3)
    assert len(full) == 3 * 4 and full[3][0].shape[0] == 2  # 50 = 16+16+16+2: no batch straddles epochs
    again = make(seed=3, epochs=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full, again))
    resumed = make(seed=3, first_epoch=2, epochs=3)  # what a run resumed at epoch 2 sees
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full[8:], resumed))
    other = make(seed=4, epochs=1)
    assert not np.array_equal(full[0][1], other[0][1])
    assert not np.array_equal(full[0][1], full[4][1])  # a new order every epoch
    # every image once per epoch
    labels = np.concatenate([b[1] for b in full[:4]])
    assert sorted(labels) == sorted(arrays["y_train"])


def test_normalisation_and_augmentation():
    arrays = make_arrays(n_train=64)
    mean, std = data.channel_stats(arrays["x_train"])
    plain = batches(data.train_pipeline(arrays["x_train"], arrays["y_train"], 64, mean, std, augment=False))
    x = np.concatenate([b[0] for b in plain])
    np.testing.assert_allclose(x.reshape(-1, 3).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(x.reshape(-1, 3).std(0), 1, atol=1e-3)
    augmented = batches(data.train_pipeline(arrays["x_train"], arrays["y_train"], 64, mean, std, augment=True))
    assert augmented[0][0].shape == (64, 32, 32, 3)
    assert not np.allclose(augmented[0][0], plain[0][0])
    # zero padding: some crops bring in padded (pixel value 0) borders
    zero_pixel = (0 - mean) / std
    assert np.isclose(augmented[0][0], zero_pixel).all(axis=-1).any()


def test_batch_larger_than_data():
    arrays = make_arrays(n_train=20)
    with pytest.raises(data.DataError, match="batch_size <= 20"):
        data.train_pipeline(arrays["x_train"], arrays["y_train"], 64, np.zeros(3), np.ones(3))
