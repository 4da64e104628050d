"""What `autotag --help` and `autotag models` tell a first-time user."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autotag.cli import app


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    return res.output


def test_flags_show_no_value_type_and_advanced_commands_sit_apart():
    top = _help()
    assert "<bool>" not in top
    tag = _help("tag")
    assert "<bool>" not in tag
    line = next(ln for ln in tag.splitlines() if "--no-ancestors" in ln)
    assert "<" not in line  # a flag: no value to give
    assert "<int range>" in next(ln for ln in tag.splitlines() if "--top-k" in ln)  # options keep their type
    everyday, _, advanced = top.partition("Data and advanced")
    assert advanced and "mosaic" in advanced and "embed" in advanced
    assert " mosaic " not in everyday and " embed " not in everyday and " tag " in everyday


def test_models_marks_the_default_and_shows_size_and_speed(monkeypatch):
    monkeypatch.delenv("AUTOTAG_MODEL", raising=False)
    res = CliRunner().invoke(app, ["models", "--format", "json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert [n for n, r in rows.items() if r["default"]] == ["efficientnet_lite0"]
    lite0, lite2, int8 = rows["efficientnet_lite0"], rows["efficientnet_lite2"], rows["efficientnet_lite0-int8"]
    assert lite0["input_size"] == 224 and lite2["input_size"] == 260
    assert lite0["speed"] == 1.0 and lite2["speed"] < 1.0 < int8["speed"]
    assert int8["size_mb"] < lite0["size_mb"] < lite2["size_mb"] and lite0["params_m"] > 4
    table = CliRunner().invoke(app, ["models", "--format", "table"], env={"COLUMNS": "160"}).output
    assert "default" in table and "1.84x" in table and "MB" in table


def test_read_only_commands_never_create_a_library(tmp_path, photos):
    typo = tmp_path / "nodb2.db"
    missing_dir = tmp_path / "no" / "such" / "dir" / "x.db"
    for args in (["duplicates", "--db", str(typo)], ["similar", str(photos["chelsea"]), "--db", str(missing_dir)],
                 ["map", "--db", str(typo), "--out", str(tmp_path / "m.html")],
                 ["refit", "--db", str(typo), "--model", "x"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip().startswith("autotag: error: no library at ") and "autotag index" in res.output
        assert len(res.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no nodb2.db, no nodb2.index, no folders
