import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # factories referenced as tiny_models:NAME

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fast_measure():
    """A MeasureConfig that keeps timing short: tests check behaviour, not this machine's speed."""
    from sizewise.measure import MeasureConfig

    return MeasureConfig(latency_seconds=0.05, throughput_sweep=(1, 2), measure_memory=False)
