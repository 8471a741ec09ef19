import pytest

from instag.config import from_dict, to_dict
from instag.config.model import ModelConfig
from instag.errors import InputError


def test_paper_defaults():
    cfg = ModelConfig()
    plane = cfg.umf.triplane
    assert (plane.n_levels, plane.n_features, plane.log2_table_size) == (12, 1, 17)
    assert (cfg.audio.code_dim, cfg.audio.smooth_window) == (32, 8)
    assert (cfg.optim.lr_grid, cfg.optim.lr_net) == (5e-3, 5e-4)
    # The personalized field is the smaller one.
    assert cfg.personalized.triplane.log2_table_size < plane.log2_table_size
    assert cfg.personalized.hidden_dim < cfg.umf.hidden_dim


def test_recipe_round_trip_and_partial_override():
    cfg = from_dict(
        ModelConfig, {"audio": {"feature_dim": 29}, "umf": {"triplane": {"n_levels": 4}}}, "model"
    )
    assert cfg.audio.feature_dim == 29 and cfg.audio.code_dim == 32
    assert cfg.umf.triplane.n_levels == 4 and cfg.umf.triplane.log2_table_size == 17
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"audio": {"code_dims": 3}}, "unknown key"),
        ({"gaussians": {"sh_degree": 5}}, "sh_degree"),
        ({"audio": {"smooth_window": 0}}, "smooth_window"),
        ({"optim": {"lr_grid": "much"}}, "number"),
        ({"loss": {"lambda_depth": 1.0}}, "unknown key"),  # loss weights are the recipe's, not the model's
    ],
)
def test_bad_values_are_refused(data, message):
    with pytest.raises(InputError, match=message):
        from_dict(ModelConfig, data, "model")
