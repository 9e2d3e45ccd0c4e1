import numpy as np
import pytest

from sizewise.core.errors import DataError
from sizewise.data import load_dataset


def test_digits_is_bundled_and_split_stratified():
    ds = load_dataset("digits")
    assert ds.task == "image-classification" and ds.input_shape == (1, 8, 8)
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes == {"train": 1212, "validation": 135, "test": 450}  # 25% test, then 10% of train for validation
    assert ds.split().inputs.max() <= 1.0 and set(np.unique(ds.split().labels)) == set(range(10))
    # stratified: every class is in validation in proportion (13 or 14 of 135)
    counts = np.bincount(ds.split("validation").labels, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 14
    assert ds.validation_source == "carved from train: 135 of 1,347 examples (10%), stratified by class, seed 0"


def test_validation_carving_is_seeded_and_disjoint():
    a, b, c = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", seed=1)
    assert np.array_equal(a.split("validation").labels, b.split("validation").labels)
    assert np.array_equal(a.split("validation").inputs, b.split("validation").inputs)
    assert not np.array_equal(a.split("validation").inputs, c.split("validation").inputs)
    train = {x.tobytes() for x in a.split("train").inputs}
    assert not any(x.tobytes() in train for x in a.split("validation").inputs)


def test_calibration_never_reads_the_test_split():
    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.data.dataset import Dataset, Split
    from sizewise.models.loader import load

    loaded = load("zoo:digits-cnn")
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    only_test = Dataset("t", "image-classification", {"test": Split(x, np.zeros(4, dtype=np.int64))},
                        num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(DataError, match="the test split is never used for calibration"):
        calibration_batches(loaded, only_test, 4)
    marked = Dataset("t", "image-classification", {"validation": Split(x + 0.5, np.zeros(4, dtype=np.int64)),
                                                   "test": Split(x, np.zeros(4, dtype=np.int64))},
                     num_classes=10, input_shape=(1, 8, 8))
    batches = calibration_batches(loaded, marked, 4)
    assert all(float(v.min()) == 0.5 for b in batches for v in b.values())


def test_mnist_style_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), y_train=np.arange(6),
             x_test=np.full((2, 28, 28), 255, dtype=np.uint8), y_test=np.array([3, 4]))
    ds = load_dataset(tmp_path / "m.npz")
    assert ds.name == "mnist" and ds.split().inputs.shape == (2, 1, 28, 28)
    assert ds.split().inputs.max() == 1.0 and list(ds.split().labels) == [3, 4]


def test_npz_without_mnist_keys(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="without the MNIST keys"):
        load_dataset(tmp_path / "other.npz")


def test_sst2_folder(tmp_path):
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na fine film . \t1\ndull \t0\n")
    ds = load_dataset(tmp_path)  # dev alone: it is what is reported on (GLUE's test file has no labels)
    assert ds.task == "text-classification" and ds.heldout == "test"
    assert ds.split().inputs == ["a fine film .", "dull"] and list(ds.split().labels) == [1, 0]
    (tmp_path / "test.tsv").write_text("sentence\tlabel\ngreat . \t1\n")
    ds = load_dataset(tmp_path)  # a labelled test file too: dev decides, test reports
    assert ds.split("validation").inputs == ["a fine film .", "dull"] and ds.split().inputs == ["great ."]
    assert ds.validation_source == "dev.tsv"


def test_stsb_folder_tolerates_extra_trailing_columns(tmp_path):
    rows = ["g\tf\t2012\t0001\t2.5\tA girl styles hair.\tA girl brushes hair.",
            "g\tf\t2012\t0002\t5.0\tMen play soccer.\tMen are playing soccer.\textra\tcolumns"]
    (tmp_path / "test.tsv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path)
    assert ds.task == "sentence-similarity"
    assert ds.split().inputs[1] == ("Men play soccer.", "Men are playing soccer.")
    assert ds.split().labels.tolist() == [2.5, 5.0]


def test_cifar10_folder_of_zips(tmp_path, monkeypatch):
    import io
    import zipfile

    from PIL import Image

    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    for split in ("train", "test"):
        with zipfile.ZipFile(tmp_path / f"{split}.zip", "w") as zf:
            for cls in ("cat", "truck"):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (255, 0, 0)).save(buf, format="JPEG")
                zf.writestr(f"{split}/{cls}/0000.jpg", buf.getvalue())
    ds = load_dataset(tmp_path)
    assert ds.name == "cifar10" and ds.split().inputs.shape == (2, 3, 32, 32)
    assert ds.split().labels.tolist() == [3, 9]  # cat, truck in the official class order
    assert list((tmp_path / "cache").glob("cifar10-test-*.npz"))  # decoded once, cached


@pytest.mark.parametrize("spec, message", [
    ("no/such/place", "no such dataset path"),
    (".", "unrecognized dataset format"),
])
def test_unrecognized_data_lists_the_accepted_formats(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    assert message in info.value.message and "MNIST-style .npz" in info.value.hint


@pytest.mark.slow
def test_real_shared_datasets(shared_data):
    mnist = load_dataset(shared_data / "mnist" / "mnist.npz")
    assert len(mnist.split("train")) == 54_000 and len(mnist.split("validation")) == 6_000
    assert len(mnist.split("test")) == 10_000
    sst2 = load_dataset(shared_data / "sst2")
    assert len(sst2.split("validation")) == 872 and len(sst2.split("test")) == 1821
    assert len(load_dataset(shared_data / "stsb").split("validation")) == 1500
    assert len(load_dataset(shared_data / "stsb").split("test")) == 1379


def test_a_sample_spans_the_split_where_its_head_would_hold_the_first_classes():
    import numpy as np

    from sizewise.data.dataset import Split

    labels = np.repeat(np.arange(10), 100)  # an image folder read class by class
    split = Split(np.arange(1000), labels)
    assert set(split.head(250).labels) == {0, 1, 2}
    sample = split.sample(250)
    assert len(sample) == 250 and set(sample.labels) == set(range(10))
    assert list(sample.inputs) == sorted(sample.inputs)  # in split order
    assert list(split.sample(250).inputs) == list(sample.inputs)  # seeded
    assert split.sample(None) is split and split.sample(5000) is split
