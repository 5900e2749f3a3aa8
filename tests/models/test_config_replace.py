"""`replace` on either family's config: an unknown field is a ConfigError (like TrainRecipe's), a known one applies."""

import pytest

from efficientformer.errors import ConfigError, UserError
from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS
from efficientformer.models.registry import get


@pytest.mark.parametrize("config", [get("efficientformerv2_s0"), MOBILENETV2_CONFIGS["mobilenetv2_100"]],
                         ids=["efficientformerv2", "mobilenetv2"])
def test_replace_unknown_field_is_a_config_error_naming_it(config):
    with pytest.raises(ConfigError, match="num_clases") as caught:
        config.replace(num_clases=10)
    assert isinstance(caught.value, (UserError, ValueError))  # the CLI shows it as one line, a program's ValueError
    assert config.replace(num_classes=7).num_classes == 7
