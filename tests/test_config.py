import pytest

from ccstereo.config import ConfigError, ModelConfig


def test_defaults_match_the_documented_pipeline():
    cfg = ModelConfig()
    assert (cfg.sample_rate_hz, cfg.window_samples, cfg.hop_samples) == (16000, 10080, 1600)
    assert (cfg.n_fft, cfg.stft_hop_samples, cfg.stft_win_samples) == (512, 160, 400)
    assert (cfg.n_freq_bins, cfg.n_stft_frames) == (257, 64)
    assert (cfg.crop_width, cfg.crop_height, cfg.resize_width, cfg.resize_height) == (448, 224, 480, 240)


def test_json_round_trip_is_equal():
    cfg = ModelConfig(hop_samples=1008, avad_layers=(True, True, False, False))
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.avad_layers, tuple)


@pytest.mark.parametrize(
    "changes, word",
    [
        ({"img_dim": 64}, "img_dim"),
        ({"hop_samples": 0}, "hop_samples"),
        ({"avad_layers": (True,)}, "avad_layers"),
        ({"window_samples": 16000}, "bottleneck"),
        ({"objectness_gate": "yes"}, "objectness_gate must be true or false"),
        ({"objectness_gate": 1}, "objectness_gate must be true or false"),
    ],
)
def test_inconsistent_configs_are_rejected_with_the_value(changes, word):
    with pytest.raises(ConfigError, match=word):
        ModelConfig(**changes)


def test_unknown_keys_and_bad_json_are_rejected():
    with pytest.raises(ConfigError, match="unknown config keys"):
        ModelConfig.from_json('{"ngf": 16, "colour": 3}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json("{")
