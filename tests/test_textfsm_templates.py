"""Golden .raw/.yml pairs for every custom TextFSM template (ntc-templates rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import textfsm
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "textfsm"
CASES = sorted((Path(__file__).parent / "textfsm").glob("*/*.raw"))


def test_cases_are_discovered() -> None:
    assert CASES, "no TextFSM golden cases found"
    for template in TEMPLATES.glob("*.textfsm"):
        assert (Path(__file__).parent / "textfsm" / template.stem).is_dir(), template.name


@pytest.mark.parametrize("raw", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_template_parses_raw_into_expected(raw: Path, update_golden: bool) -> None:
    template = TEMPLATES / f"{raw.parent.name}.textfsm"
    with template.open() as fh:
        fsm = textfsm.TextFSM(fh)
    rows = fsm.ParseText(raw.read_text())
    parsed = [dict(zip([h.lower() for h in fsm.header], row, strict=True)) for row in rows]
    expected_file = raw.with_suffix(".yml")
    if update_golden:
        expected_file.write_text(yaml.safe_dump({"parsed_sample": parsed}, explicit_start=True))
    assert parsed == yaml.safe_load(expected_file.read_text())["parsed_sample"]


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.textfsm")), ids=lambda p: p.stem)
def test_template_follows_ntc_rules(template: Path) -> None:
    text = template.read_text()
    assert re.fullmatch(r"[a-z0-9]+_[a-z0-9_]+", template.stem)
    for value in re.findall(r"^Value\s+(?:\w+\s+)*?([A-Za-z_]+)\s+\(", text, re.M):
        assert value.isupper(), value
    states = re.split(r"\n(?=[A-Z]\w*\n)", text.split("\n\n", 1)[1])
    for state in states:
        assert "^. -> Error" in state, state.splitlines()[0]
