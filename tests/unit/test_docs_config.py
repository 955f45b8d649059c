"""docs/configuration.md carries the reference table generated from aegis.core.config.OPTIONS
(``python -m aegis.core.config_doc --write`` refreshes it), so the page cannot drift."""

from pathlib import Path

import pytest

from aegis.core import config_doc
from aegis.core.config import OPTIONS, load_settings
from aegis.scheduling.job_settings import job_overrides

PAGE = config_doc.DOC.read_text(encoding="utf-8")


def test_the_page_holds_the_table_generated_from_the_code() -> None:
    assert config_doc.splice(PAGE, config_doc.render()) == PAGE, (
        "docs/configuration.md is out of date: run python -m aegis.core.config_doc --write")


def test_every_variable_and_toml_key_is_listed_with_its_default() -> None:
    rows = [line for line in PAGE.splitlines() if line.startswith("| `")]
    for option in OPTIONS:
        row = next((r for r in rows if r.startswith(f"| `{option.env}` | `{option.toml}` |")),
                   None)
        assert row is not None, f"{option.env} / {option.toml} is missing"
        assert row.split("|")[3].strip(), f"{option.env} has no default"


def test_the_job_override_forms_are_documented() -> None:
    for form in ('[jobs.morning_status]\nat = "07:00"', "enabled = false",
                 "AEGIS_JOB__MORNING_STATUS__AT=07:00", "AEGIS_CONFIG"):
        assert form in PAGE


def test_splice_refuses_a_page_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        config_doc.splice("# no markers here", "| table |")


def test_every_toml_example_of_the_page_loads(tmp_path: Path) -> None:
    blocks = [part.split("```", 1)[0] for part in PAGE.split("```toml\n")[1:]]
    assert len(blocks) >= 2
    loaded = []
    for n, block in enumerate(blocks):
        path = tmp_path / f"example{n}.toml"
        path.write_text(block, encoding="utf-8")
        loaded.append(load_settings({"AEGIS_CONFIG": str(path)}))
    settings = loaded[0]
    assert settings.host == "web-01"
    assert settings.docker_scope == "labeled"
    assert settings.event_retention_s == 60 * 86400
    assert job_overrides(settings)["memory_cleanup"].enabled is False
