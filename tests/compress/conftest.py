import pytest

import sizewise
from sizewise.measure import MeasureConfig


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
