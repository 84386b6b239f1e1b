"""Tests run offline, on data they build, with a throwaway HF cache (set before any HF import)."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "HF_HOME" not in os.environ or not os.environ.get("PROCRUSTEAN_KEEP_HF_HOME"):
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="procrustean-hf-home-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def imagefolder(tmp_path_factory):
    """A small imagefolder tree (train/ + test/, 3 classes) shared by the recipe tests."""
    from recipe_utils import make_imagefolder

    return make_imagefolder(tmp_path_factory.mktemp("imagefolder"))
