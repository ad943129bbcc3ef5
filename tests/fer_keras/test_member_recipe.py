"""``MemberRecipe.from_preset``, the one place every training CLI resolves a preset and its overrides."""

from __future__ import annotations

import pytest

from fer_keras.members import MemberRecipe
from tests.cli_output import own_lines, run_cli


def test_an_augmentation_override_replaces_only_the_fields_it_names():
    preset = MemberRecipe.from_preset("lban", "fer2013_adamw", "fer2013")
    recipe = MemberRecipe.from_preset("lban", "fer2013_adamw", "fer2013", {"augmentation": {"erase_probability": 0.3}, "epochs": 2})
    assert recipe.settings["augmentation"] == dict(preset.settings["augmentation"], erase_probability=0.3)
    assert recipe.settings["epochs"] == 2 and preset.settings["epochs"] == 30
    config = recipe.loop_config(seed=1)
    assert config.augmentation.erase_probability == 0.3 and config.augmentation.max_rotation == 0.0 and config.seed == 1


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochz": 3}, r"Unknown training setting\(s\) \['epochz'\]. Known: .*'epochs'"),
    ({"seed": 3}, r"Unknown training setting\(s\) \['seed'\]"),  # the CLIs' own flag, not a preset setting
    ({"augmentation": {"flipp": True}}, r"Unknown augmentation field\(s\) \['flipp'\]. Known: .*'flip'"),
])
def test_unknown_settings_are_errors_naming_them(overrides, message):
    with pytest.raises(ValueError, match=message):
        MemberRecipe.from_preset("baseline", "fer2013", "fer2013", overrides)


def test_the_train_cli_reports_recipe_errors_as_usage_errors(tmp_path):
    for args, message in ((["--preset=nope"], "Unknown preset 'nope' for baseline. Known: fer2013"),
                          (["--model_options=widthz=3"], "widthz")):
        result = run_cli("-m", "fer_keras.train", "--model=baseline", f"--output_dir={tmp_path / 'run'}", *args)
        assert result.returncode == 2, result.stderr
        lines = own_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
