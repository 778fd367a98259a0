"""A micro model saved once per session for the stage tests."""
import pytest
from .helpers import MICRO


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory) -> str:
    from r1lab.models.tiny import save_tiny_model

    return str(save_tiny_model(MICRO, tmp_path_factory.mktemp("micro") / "model"))
