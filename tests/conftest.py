import sys
from pathlib import Path

import pytest

import sizewise
from sizewise.measure import MeasureConfig

sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # factories referenced as tiny_models:NAME

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """torch on one thread: a 2-thread pool stalls on a shared 2-core machine when another process runs, while one
    thread keeps these small models fast (SVD of a 500x800 matrix: 0.08 s alone, 13.7 s in a contended pool)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fast_measure():
    """A MeasureConfig that keeps timing short: tests check behaviour, not this machine's speed."""
    from sizewise.measure import MeasureConfig

    return MeasureConfig(latency_seconds=0.05, throughput_sweep=(1, 2), measure_memory=False)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT with a 40-token WordPiece vocabulary, saved as a Hugging Face directory (no download)."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        "large", "models", "cost", "money", "energy", "and", "carbon", ",", ".", "most", "teams", "cannot",
        "deploy", "them", "pruning", "quantization", "make", "smaller", "faster", "the", "a", "model", "is",
        "measuring", "honestly", "tells", "by", "how", "much", "distillation"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    # transformers 5 reads the vocabulary from `vocab=`; `vocab_file=` is silently ignored (every word -> [UNK])
    tokenizer = transformers.BertTokenizerFast(vocab=str(path / "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def digits():
    return sizewise.load_dataset("digits")


@pytest.fixture(scope="session")
def trained_digits_dir(tmp_path_factory, digits):
    """A digits CNN trained for a few epochs, saved as a run directory."""
    loaded = sizewise.load("zoo:digits-cnn")
    sizewise.train(loaded, digits, sizewise.TrainConfig(epochs=5, seed=0))
    path = tmp_path_factory.mktemp("base")
    sizewise.save_model(loaded, path / "model")
    return path


@pytest.fixture
def quick():
    return MeasureConfig(latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False)
