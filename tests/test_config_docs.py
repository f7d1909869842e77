"""docs/configuration.md documents every key of the config schema, in its section's table, with its default."""
import re
from pathlib import Path

import pytest

from utils.config import ALIASES, ClozeConfig, DatasetConfig, SharedConfig, section_keys

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
# The heading that starts each section's table on the page.
SECTIONS = {"`[shared_parameters]`": SharedConfig, "A dataset section": DatasetConfig, "`[SelfComplete]`": ClozeConfig}
# Defaults the page gives in words: `layout` (the section's own name) and `detector_config` (none).
DEFAULTS_IN_WORDS = {"layout", "detector_config"}


def defaults(cls) -> dict:
    """Key -> default of a section's dataclass, flattened ones included, as the schema lists them."""
    return {key: spec.default for key, spec in section_keys(cls).items()}


def documented_rows(heading: str) -> list[tuple[list[str], list[str]]]:
    """(keys, defaults) of each row of the first table after the `## ...heading...` line."""
    sections = re.split(r"^## ", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    (section,) = [s for s in sections if heading in s.splitlines()[0]]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| `") else None
        if cells:
            keys = [k for k in re.findall(r"`(\w+)`", cells[0]) if k not in ALIASES]
            rows.append((keys, re.findall(r"`([^`]+)`", cells[1])))
    return rows


def same_default(text: str, value) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, (str, Path)):
        return text == str(value)
    return float(text) == float(value)


@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_every_key_is_documented_with_its_default(heading):
    cls = SECTIONS[heading]
    rows = documented_rows(heading)
    documented = [key for keys, _ in rows for key in keys]
    assert sorted(documented) == sorted(defaults(cls)), "keys missing or extra on docs/configuration.md"
    expected, in_words = defaults(cls), set()
    for keys, texts in rows:
        if len(texts) != len(keys):
            in_words |= set(keys)
            continue
        for key, text in zip(keys, texts):
            assert same_default(text, expected[key]), f"{key}: the page says {text}, the schema {expected[key]!r}"
    assert in_words <= DEFAULTS_IN_WORDS


def test_the_reference_spellings_are_named():
    text = PAGE.read_text(encoding="utf-8")
    for alias, name in ALIASES.items():
        assert f"`{name}` (`{alias}`)" in text
