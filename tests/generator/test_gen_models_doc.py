"""docs/models.md stays true: each model's preset table is the one in generator/model_spaces.py, and it names each
model's default weights, setting and pipeline class."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.model_spaces import SPACES
from generator.models import backend_class

MODELS_MD = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.mark.parametrize("key", list(SPACES))
def test_the_page_lists_each_models_presets_weights_and_setting(key: str) -> None:
    text = MODELS_MD.read_text()
    section = text[text.index(f"(`{key}`") :]
    section = section[: section.find("\n## ", 1)]
    for preset in SPACES[key].presets.values():
        row = (
            f"| {preset.name} | {preset.resolution} | {preset.frames} | {preset.fps} | {preset.steps} | "
            f"{preset.guidance:g} |"
        )
        assert row in section, f"{key}: {row} is not in docs/models.md"
    backend = backend_class(key)
    assert f"python -m bench.generate --models {key}" in section
    table_row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
    assert backend.default_source in table_row and SPACES[key].source_setting in table_row
    assert SPACES[key].display_name in table_row


@pytest.mark.parametrize("key", list(SPACES))
def test_each_backends_default_weights_are_its_settings_default(key: str) -> None:
    from config.catalog import SETTINGS

    setting = next(s for s in SETTINGS if s.name == SPACES[key].source_setting)
    assert setting.default == backend_class(key).default_source
