"""One smoke build (every step of ``make train`` on three tiny phantoms, a few steps per model)
shared by the training tests; about half a minute on two cores."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory) -> Path:
    from training.build_all import main

    work = tmp_path_factory.mktemp("train-smoke")
    assert main(["--smoke", "--work", str(work)]) == 0
    return work
