"""A user's own files, read through the `datasets` library: tables, save_to_disk folders, image folders, text."""

import subprocess
import sys

import numpy as np
import pytest

from sizewise.core.errors import ConfigError, DataError, MissingExtraError
from sizewise.data import DataOptions, load_dataset

pytest.importorskip("datasets")

AG_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


def _write_ag_news(path, rows_per_class=10, classes=AG_CLASSES):
    lines = ["text,label"]
    for i in range(rows_per_class):
        for cls in classes:
            lines.append(f'"Story {i} about {cls.lower()}, with a comma",{cls}')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ag_news_csv_with_string_labels_is_split_and_mapped(tmp_path):
    ds = load_dataset(_write_ag_news(tmp_path / "ag_news.csv"))
    assert ds.task == "text-classification" and ds.name == "ag_news"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 32, "validation": 4, "test": 4}
    assert ds.label_names == ["Business", "Sci/Tech", "Sports", "World"] and ds.num_classes == 4
    test = ds.split("test")
    assert sorted(test.labels.tolist()) == [0, 1, 2, 3]  # stratified: one of each class
    assert all(ds.label_names[y].lower() in x for x, y in zip(test.inputs, test.labels))
    assert test.labels.dtype == np.int64 and test.inputs[0].endswith(", with a comma")
    assert ds.validation_source == "carved from train: 4 of 36 examples (10%), stratified by class, seed 0"
    assert "test split carved from train: 4 of 40 examples (10%), stratified by class, seed 0" in ds.notes
    again, other = load_dataset(tmp_path / "ag_news.csv"), load_dataset(tmp_path / "ag_news.csv", seed=1)
    assert again.split("test").inputs == test.inputs and other.split("test").inputs != test.inputs


def test_folder_splits_by_file_name_and_unseen_labels_are_named(tmp_path):
    _write_ag_news(tmp_path / "train.csv")
    _write_ag_news(tmp_path / "test.csv", rows_per_class=2)
    (tmp_path / "README.txt").write_text("AG News, a sample\n")
    ds = load_dataset(tmp_path)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 36, "validation": 4, "test": 8}
    assert "ignored text files beside the tables: README.txt" in ds.notes
    _write_ag_news(tmp_path / "test.csv", rows_per_class=1, classes=("World", "Health"))
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert info.value.message == ("label 'Health' in the test split is not among the train split's labels "
                                  "['Business', 'Sci/Tech', 'Sports', 'World']")


def test_headerless_tsv_takes_columns(tmp_path):
    rows = [f"{'pos' if i % 2 else 'neg'}\tsentence {i} \"quoted\"" for i in range(20)]
    (tmp_path / "reviews.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:  # without names, the first row is taken for a header
        load_dataset(tmp_path / "reviews.tsv")
    assert info.value.message == "no text column among ['neg', 'sentence 0 \"quoted\"']; pass --text-column NAME"
    ds = load_dataset(tmp_path / "reviews.tsv", options=DataOptions(columns=["label", "review"]))
    assert ds.task == "text-classification" and ds.label_names == ["neg", "pos"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 16, "validation": 2, "test": 2}
    train = ds.split("train")
    assert train.inputs[0].endswith(' "quoted"')  # a TSV is read unquoted: quotes are text
    assert all(ds.label_names[y] == ("pos" if int(x.split()[1]) % 2 else "neg") for x, y in zip(train.inputs,
                                                                                              train.labels))


def test_jsonl_pairs_with_scores_are_sentence_similarity(tmp_path):
    import json

    def write(name, n):
        rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i / 4} for i in range(n)]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("train.jsonl", 20)
    write("dev.jsonl", 5)
    ds = load_dataset(tmp_path)
    assert ds.task == "sentence-similarity" and ds.label_names is None and ds.num_classes is None
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 18, "validation": 5, "test": 2}
    assert ds.split("validation").inputs[1] == ("a 1", "b 1")
    assert ds.split("validation").labels.dtype == np.float32 and ds.split("validation").labels[1] == 0.25
    assert ds.validation_source == "dev.jsonl" and ds.heldout == "test"


def test_parquet_with_integer_labels_and_explicit_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"title": [f"t{i}" for i in range(30)], "body": [f"body {i}" for i in range(30)],
                      "tag": [i % 3 for i in range(30)]})
    pq.write_table(table, tmp_path / "news.parquet")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "news.parquet")
    assert info.value.message == "no text column among ['title', 'body', 'tag']; pass --text-column NAME"
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "news.parquet", options=DataOptions(text_column="body"))
    assert info.value.message == ("no label column among ['title', 'body', 'tag']; pass --label-column NAME "
                                  "(or --task causal-lm to read the 'body' column alone)")
    ds = load_dataset(tmp_path / "news.parquet", options=DataOptions(text_column="body", label_column="tag"))
    assert ds.task == "text-classification" and ds.num_classes == 3 and ds.label_names is None
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 24, "validation": 3, "test": 3}
    train = ds.split("train")
    assert all(x.startswith("body ") and y == int(x.split()[1]) % 3 for x, y in zip(train.inputs, train.labels))


def test_save_to_disk_dataset_dict_keeps_class_label_names(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})

    def part(n):
        return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
                                          features=features)

    datasets.DatasetDict({"train": part(12), "validation": part(4), "test": part(6)}).save_to_disk(tmp_path / "dd")
    ds = load_dataset(tmp_path / "dd")
    assert ds.task == "text-classification" and ds.label_names == ["negative", "positive"] and ds.num_classes == 2
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 12, "validation": 4, "test": 6}
    assert ds.split("test").labels.tolist() == [0, 1, 0, 1, 0, 1]
    part(20).save_to_disk(tmp_path / "one")  # a lone Dataset is train: test, then validation are carved
    assert {k: len(v) for k, v in load_dataset(tmp_path / "one").splits.items()} == {"train": 16, "validation": 2,
                                                                                   "test": 2}


def _image_folder(root, classes=("cat", "dog", "fish"), per_class=5, odd_size=(10, 10)):
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fish": (0, 0, 255)}
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            size = odd_size if (cls, i) == (classes[0], 0) else (8, 6)  # (width, height): one image is odd
            Image.new("RGB", size, colours.get(cls, (9, 9, 9))).save(root / cls / f"{i}.png")
    return root


def test_image_folder_is_resized_to_the_most_common_size(tmp_path):
    ds = load_dataset(_image_folder(tmp_path / "pets"))
    assert ds.task == "image-classification" and ds.label_names == ["cat", "dog", "fish"] and ds.num_classes == 3
    assert ds.input_shape == (3, 6, 8)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 12, "validation": 1, "test": 2}
    x = np.concatenate([s.inputs for s in ds.splits.values()])
    y = np.concatenate([s.labels for s in ds.splits.values()])
    assert x.dtype == np.float32 and x.shape == (15, 3, 6, 8) and x.min() == 0.0 and x.max() == 1.0
    assert all(x[i, int(y[i])].min() == 1.0 for i in range(len(y)))  # red cats, green dogs, blue fish
    assert any("images as RGB at 6x8 (height x width; the most common size, 14 of 15 images;" in n for n in ds.notes)
    square = load_dataset(tmp_path / "pets", options=DataOptions(image_size=4))
    assert square.input_shape == (3, 4, 4) and square.split().inputs.shape[1:] == (3, 4, 4)


def test_image_folder_with_train_and_test_folders(tmp_path):
    _image_folder(tmp_path / "train", per_class=4)
    _image_folder(tmp_path / "test", per_class=2, odd_size=(8, 6))
    ds = load_dataset(tmp_path)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 11, "validation": 1, "test": 6}
    assert sorted(ds.split("test").labels.tolist()) == [0, 0, 1, 1, 2, 2] and ds.label_names == ["cat", "dog", "fish"]


def test_image_folder_with_a_metadata_file(tmp_path):
    from PIL import Image

    (tmp_path / "scans").mkdir()
    rows = ["file_name,label"]
    for i in range(12):  # grey images: read as RGB
        Image.new("L", (5, 7), 40 * (i % 2)).save(tmp_path / "scans" / f"{i}.png")
        rows.append(f"{i}.png,{'odd' if i % 2 else 'even'}")
    (tmp_path / "scans" / "metadata.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "scans")
    assert ds.task == "image-classification" and ds.label_names == ["even", "odd"] and ds.input_shape == (3, 7, 5)
    x, y = ds.split("train").inputs, ds.split("train").labels
    assert np.allclose(x[y == 1], 40 / 255) and np.all(x[y == 0] == 0)


def test_text_file_is_causal_lm_with_contiguous_held_out_tail(tmp_path):
    lines = [f" paragraph {i} ." for i in range(30)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(lines) + "\n \n")  # blank lines between paragraphs
    ds = load_dataset(tmp_path / "corpus.txt")
    assert ds.task == "causal-lm" and ds.num_classes is None and ds.label_names is None
    assert ds.split("train").inputs == lines[:24] and ds.split("validation").inputs == lines[24:27]
    assert ds.split("test").inputs == lines[27:]
    assert ds.split("test").labels.dtype == np.int64 and ds.split("test").labels.tolist() == [0, 0, 0]
    assert ds.validation_source == "carved from train: the last 3 of 27 lines (10%), contiguous"


def test_text_folder_valid_and_test_files(tmp_path):
    (tmp_path / "valid.txt").write_text(" = A = \n \n Alpha text .\n")
    (tmp_path / "wiki.test.raw").write_text(" = B = \r\n Beta text .\r\n")
    ds = load_dataset(tmp_path)
    assert ds.task == "causal-lm" and set(ds.splits) == {"validation", "test"} and ds.heldout == "test"
    assert ds.split("validation").inputs == [" = A = ", " Alpha text ."]
    assert ds.split("test").inputs == [" = B = ", " Beta text ."] and ds.validation_source == "valid.txt"


def _csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: _csv(d / "empty.csv", ""), "{d}/empty.csv is empty"),
    (lambda d: _csv(d / "header.csv", "text,label\n"), "{d}/header.csv has no rows"),
    (lambda d: _csv(d / "broken.parquet", "not a parquet file at all"), "cannot read {d}/broken.parquet: "),
    (lambda d: _image_folder(d / "pets", classes=("cat",)), "image folder {d}/pets has one class (cat); "
     "classification needs a subfolder for each of two or more classes"),
    (lambda d: _csv(d / "tiny.csv", "text,label\na,x\nb,y\n"), "{d}/tiny.csv has 2 example(s): too few to set a "
     "validation and a test split apart (10 or more are needed)"),
    (lambda d: (_csv(d / "train.csv", "text,label\na,x\n"), _csv(d / "test.jsonl", "{}"))[0].parent,
     "mixed formats: test.jsonl, train.csv"),
    (lambda d: _csv(d / "x.jsonl", '{"text": "a"}\n'), "--columns names the columns of a headerless CSV/TSV file, "
     "but x.jsonl is json, which names its own columns"),
], ids=["empty", "header-only", "unreadable", "one-class-images", "too-few-rows", "mixed-formats", "columns-on-json"])
def test_bad_inputs_give_one_line_errors(make, message, tmp_path):
    spec = make(tmp_path)
    options = DataOptions(columns=("text",)) if str(spec).endswith("x.jsonl") else None
    with pytest.raises(DataError) as info:
        load_dataset(spec, options=options)
    expected = message.format(d=tmp_path)
    assert info.value.message.startswith(expected) and "\n" not in str(info.value)
    if expected.endswith(": "):  # the reason comes from the parser, whatever its words
        assert len(info.value.message) > len(expected)


def test_options_validate_themselves():
    assert DataOptions(columns="label, text").columns == ("label", "text")
    assert DataOptions(image_size=32).image_size == (32, 32)
    with pytest.raises(ConfigError, match="unknown task 'summarization'"):
        DataOptions(task="summarization")
    with pytest.raises(ConfigError, match="columns must be distinct"):
        DataOptions(columns=("a", "a"))
    with pytest.raises(ConfigError, match="image_size must be"):
        DataOptions(image_size=(0, 4))


def test_explicit_task_and_a_headered_seven_column_tsv(tmp_path):
    (tmp_path / "notes.csv").write_text("text,id\n" + "".join(f"line {i},{i}\n" for i in range(20)))
    ds = load_dataset(tmp_path / "notes.csv", options=DataOptions(task="causal-lm"))
    assert ds.task == "causal-lm" and ds.split("train").inputs[0] == "line 0"
    glue = tmp_path / "glue"  # a headered 7-column TSV is a user's table, not STS-B
    glue.mkdir()
    (glue / "train.tsv").write_text("a\tb\tc\td\te\tsentence\tlabel\n" +
                                    "".join(f"1\t2\t3\t4\t5\ts{i}\t{i % 2}\n" for i in range(20)))
    assert load_dataset(glue).task == "text-classification"


def test_datasets_is_imported_only_when_needed():
    code = ("import sys, sizewise, sizewise.data; from sizewise.data import DataOptions, load_dataset; "
            "load_dataset('digits'); print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_missing_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(MissingExtraError) as info:
        load_dataset(_write_ag_news(tmp_path / "ag.csv"))
    assert info.value.hint == "pip install 'sizewise[data]'"


@pytest.mark.slow
def test_wikitext2_is_causal_lm_with_validation_and_test(shared_data):
    ds = load_dataset(shared_data / "wikitext2")
    assert ds.task == "causal-lm" and set(ds.splits) == {"validation", "test"} and ds.heldout == "test"
    assert len(ds.split("validation")) == 2461 and len(ds.split("test")) == 2891
    assert ds.split("test").inputs[0] == " = Robert Boulter = " and ds.validation_source == "valid.txt"
    assert not any("\r" in line for line in ds.split("test").inputs[:50])
