import pytest

from instag.config.model import (
    AlignerConfig,
    AudioConfig,
    HashGridConfig,
    HookConfig,
    ModelConfig,
    MotionFieldConfig,
    TriplaneConfig,
)


def tiny_config() -> ModelConfig:
    plane = TriplaneConfig(
        n_levels=4, n_features=1, log2_table_size=10, base_resolution=4, max_resolution=32, bound=1.0
    )
    return ModelConfig(
        audio=AudioConfig(
            feature_dim=8, window=4, hidden_dim=16, code_dim=8, smooth_window=8, attention_hidden=8
        ),
        expression_dim=2,
        umf=MotionFieldConfig(triplane=plane, hidden_dim=16, n_layers=2),
        personalized=MotionFieldConfig(triplane=plane, hidden_dim=8, n_layers=1),
        aligner=AlignerConfig(
            grid=HashGridConfig(n_levels=4, log2_table_size=10, max_resolution=32, bound=1.0), hidden_dim=8
        ),
        hook=HookConfig(code_dim=4, hidden_dim=8),
    )


@pytest.fixture
def cfg() -> ModelConfig:
    return tiny_config()
