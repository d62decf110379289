"""Checkpoint loading: official release format, native safetensors format, errors naming keys."""

import csv

import numpy as np
import pytest
import torch

import ccstereo
from ccstereo.checkpoint import CheckpointError, official_key_to_native
from conftest import STATE_DICT_TSV, skip_or_fail


def test_every_used_official_key_maps_to_a_model_parameter():
    if not STATE_DICT_TSV.is_file():
        skip_or_fail(f"{STATE_DICT_TSV} not found")
    rows = list(csv.reader(STATE_DICT_TSV.open(), delimiter="\t"))
    model_keys = ccstereo.CCStereo().state_dict()
    used = [r for r in rows if r[3] == "yes"]
    for key, shape, _, _ in used:
        native = official_key_to_native(key)
        assert native in model_keys, key
        assert list(model_keys[native].shape) == eval(shape), key  # noqa: S307 - test data
    unused = [r[0] for r in rows if r[3] == "no" and not r[0].endswith("num_batches_tracked")]
    assert all(official_key_to_native(k) is None for k in unused)
    mapped = {official_key_to_native(r[0]) for r in used}
    expected = {k for k in model_keys if not k.endswith("num_batches_tracked")}
    assert mapped == expected  # nothing of the model is left uninitialised


def test_native_round_trip_is_bit_identical(official, tmp_path):
    model = ccstereo.load_checkpoint(official.checkpoint)
    path = ccstereo.save_checkpoint(model, tmp_path / "model.safetensors")
    again = ccstereo.load_checkpoint(path)
    assert again.config == model.config
    frames = torch.from_numpy(official.crops_u8[:3])
    mono = torch.from_numpy(official.windows[:3])
    with torch.no_grad():
        a = model.forward_windows(frames, mono)
        b = again.forward_windows(frames, mono)
    assert torch.equal(a, b)


def _official_state_dict(official):
    return torch.load(official.checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def test_missing_used_key_is_named(official, tmp_path):
    sd = _official_state_dict(official)
    del sd["net_audio.audionet_upconvlayer2.upconv.bias"]
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"audio\.up2\.conv\.bias"):
        ccstereo.load_checkpoint(tmp_path / "bad.pth")


def test_renamed_key_is_named(official, tmp_path):
    sd = _official_state_dict(official)
    sd["net_audio.audionet_convlayer3.0.weights"] = sd.pop("net_audio.audionet_convlayer3.0.weight")
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"convlayer3\.0\.weights|down3\.0\.weight"):
        ccstereo.load_checkpoint(tmp_path / "bad.pth")


def test_unused_keys_may_be_absent(official, tmp_path):
    sd = {
        k: v
        for k, v in _official_state_dict(official).items()
        if "flow_conv" not in k and "attn_layer" not in k and "segment.reduce" not in k
    }
    torch.save({"state_dict": sd}, tmp_path / "lean.pth")
    ccstereo.load_checkpoint(tmp_path / "lean.pth")


def test_shape_mismatch_is_named(official, tmp_path):
    sd = _official_state_dict(official)
    sd["net_audio.img_pos_embed.weight"] = torch.zeros(90, 128)
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="98"):
        ccstereo.load_checkpoint(tmp_path / "bad.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        ccstereo.load_checkpoint(tmp_path / "evil.pth")


def test_a_checkpoint_in_the_older_pickle_format_loads_as_the_zip_one(official, tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"state_dict": _official_state_dict(official)}, legacy, _use_new_zipfile_serialization=False)
    assert not legacy.read_bytes().startswith(b"PK")  # not a zip archive
    a, b = ccstereo.load_checkpoint(official.checkpoint), ccstereo.load_checkpoint(legacy)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        ccstereo.load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ccstereo.load_checkpoint(tmp_path / "absent.pth")


def test_native_weights_differ_from_a_fresh_model(official):
    """Guard against a loader that silently leaves random weights in place."""
    model = ccstereo.load_checkpoint(official.checkpoint)
    loaded, fresh = model.state_dict(), ccstereo.CCStereo(model.config).state_dict()
    key = "audio.fusion.cross_attn.in_proj_weight"
    assert not np.allclose(loaded[key].numpy(), fresh[key].numpy())
