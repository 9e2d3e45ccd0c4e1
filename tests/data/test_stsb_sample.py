"""The STS-B sample bundled for ``sizewise demo``: loadable by the packed reader, licence-clean, shipped, reproducible."""

import importlib.util
import tomllib
from pathlib import Path

import pytest

import sizewise.data
from sizewise.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(sizewise.data.__file__).parent / "samples" / "stsb-sample"
SCRIPT = SAMPLE.parent / "make_stsb_sample.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_stsb_sample", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_packed_reader_loads_it_as_stsb_with_its_own_dev_and_test():
    ds = load_dataset(SAMPLE)
    assert (ds.name, ds.task, ds.heldout) == ("stsb", "sentence-similarity", "test")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 300, "validation": 200, "test": 250}
    assert ds.validation_source == "dev.tsv"  # dev is the validation split, not carved from train
    scores = ds.split("test").labels
    assert scores.min() >= 0 and scores.max() <= 5 and len(set(scores.tolist())) > 20


def test_only_subsets_whose_text_is_cc_by_sa_are_bundled():
    allowed = set(_script().SOURCES)
    for split in ("train", "dev", "test"):
        files = {line.split("\t")[1] for line in (SAMPLE / f"{split}.tsv").read_text(encoding="utf-8").splitlines()}
        assert files <= allowed, f"{split}.tsv holds rows from {files - allowed}"
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme and "Agirre" in readme
    assert "Commons Attribution - Share Alike 4.0" in (SAMPLE / "LICENSE.txt").read_text(encoding="utf-8")


def test_a_wheel_ships_the_sample_with_its_licence():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sizewise.data"]
    package = Path(sizewise.data.__file__).parent
    shipped = {p.name for g in globs for p in package.glob(g)}
    assert {"train.tsv", "dev.tsv", "test.tsv", "LICENSE.txt", "README.md"} <= shipped


@pytest.mark.slow
def test_the_script_rebuilds_the_same_files_from_the_release(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["make_stsb_sample.py", "--source", str(shared_data / "stsb"),
                                     "--out", str(tmp_path)])
    _script().main()
    for name in ("train.tsv", "dev.tsv", "test.tsv", "LICENSE.txt"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
