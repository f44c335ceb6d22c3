import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "crates" / "nsparse-model" / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    if not (FIXTURES / "tiny-distilbert" / "config.json").exists():
        pytest.fail(f"the committed fixture models are missing from {FIXTURES}; run the tests from a checkout")
    return FIXTURES
