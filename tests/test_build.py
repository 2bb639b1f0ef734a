"""The compiled extension: what was built, and how a failed load reads."""

import sys

import pytest
import torch

import vaenas
from vaenas import _extension


def test_build_info_lists_compiled_backends():
    info = vaenas.build_info()
    assert info["extension_loaded"], info.get("extension_error")
    assert info["backends"][:2] == ["reference", "cpu"]
    assert info["built_for_torch"] == torch.__version__
    assert torch.ops.vaenas.compiled_with_cuda() == ("cuda" in info["backends"])
    if "cuda" in info["backends"]:
        assert info["built_for_cuda"] == torch.version.cuda
        assert "9.0" in info["cuda_arch_list"]


def test_failed_load_says_what_was_expected_and_how_to_rebuild(monkeypatch):
    monkeypatch.setitem(sys.modules, "vaenas._C", None)  # makes `from vaenas import _C` fail
    monkeypatch.delattr(vaenas, "_C", raising=False)
    with pytest.raises(_extension.ExtensionNotAvailable) as error:
        _extension.load.__wrapped__()
    message = str(error.value)
    assert "vaenas._C failed to load" in message
    assert torch.__version__ in message
    assert "pip install --no-build-isolation" in message
