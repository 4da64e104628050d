"""One settings chain for every command (defaults < config file < AUTOTAG_* < flags) and one parser of
user-typed tags."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autotag.cli import app
from autotag.config import Settings, load_settings
from autotag.types import AutotagError
from autotag.usertags import loose_tag_key, normalise_user_tag, parse_user_tags


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No AUTOTAG_* setting from the outside, and no user config file, except the test's own."""
    for name in ("top_k", "threshold", "batch_size", "workers", "threads", "model", "config", "max_pixels"):
        monkeypatch.delenv(f"AUTOTAG_{name.upper()}", raising=False)
    monkeypatch.setenv("AUTOTAG_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text("")
    return tmp_path / "config.toml"


def test_defaults_then_file_then_environment_then_flags(clean_env, monkeypatch):
    assert load_settings().top_k == Settings.top_k and load_settings().threads == 0
    clean_env.write_text("top_k = 2\nthreshold = 0.2\nbatch_size = 16\n")
    assert (load_settings().top_k, load_settings().threshold, load_settings().batch_size) == (2, 0.2, 16)
    monkeypatch.setenv("AUTOTAG_TOP_K", "3")
    monkeypatch.setenv("AUTOTAG_THREADS", "1")
    settings = load_settings()
    assert (settings.top_k, settings.threshold, settings.threads) == (3, 0.2, 1)
    flagged = load_settings(top_k=7, threshold=None)  # None = the flag was not given
    assert (flagged.top_k, flagged.threshold) == (7, 0.2)
    monkeypatch.setenv("AUTOTAG_TOP_K", "many")
    with pytest.raises(AutotagError, match="setting top_k: 'many' is not a valid int"):
        load_settings()


def test_a_named_config_file_that_is_missing_is_one_line(clean_env, monkeypatch, photos):
    monkeypatch.setenv("AUTOTAG_CONFIG", str(clean_env.parent / "nope.toml"))
    with pytest.raises(AutotagError, match=r"config file .*nope.toml \(named by AUTOTAG_CONFIG\) not found"):
        load_settings()
    res = CliRunner().invoke(app, ["tag", str(photos["chelsea"])])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "nope.toml (named by AUTOTAG_CONFIG) not found" in res.output
    clean_env.write_text("top_k = 'x'\ncolour = 1\n")
    monkeypatch.setenv("AUTOTAG_CONFIG", str(clean_env))
    with pytest.raises(AutotagError, match=r"unknown keys \['colour'\]"):
        load_settings()


def _leaf_counts(output: str) -> list[int]:
    """Labels and objects per record (what top_k counts)."""
    return [sum(t["kind"] in ("label", "object") for t in json.loads(line)["tags"]) for line in output.splitlines()]


def test_autotag_tag_honours_the_settings_and_a_flag_still_wins(clean_env, photos):
    """`AUTOTAG_TOP_K=1 autotag tag photo.jpg` gives one label (it used to ignore the variable)."""
    files = [str(photos["chelsea"]), str(photos["camera"])]
    runner = CliRunner()
    full = _leaf_counts(runner.invoke(app, ["tag", *files, "--format", "jsonl", "--top-k", "100"]).stdout)
    assert full[0] >= 1 and full[1] >= 2, full  # camera: the tripod label and the detected person
    env = {"AUTOTAG_TOP_K": "1", "AUTOTAG_THRESHOLD": "0"}
    res = runner.invoke(app, ["tag", *files, "--format", "jsonl"], env=env)
    assert res.exit_code == 0, res.output
    assert _leaf_counts(res.stdout) == [1, 1]
    res = runner.invoke(app, ["tag", *files, "--format", "jsonl", "--top-k", "3"], env=env)
    assert _leaf_counts(res.stdout) == [min(3, n) for n in full]
    clean_env.write_text("top_k = 1\nthreshold = 0.0\n")  # the config file, under the environment
    assert _leaf_counts(runner.invoke(app, ["tag", *files, "--format", "jsonl"]).stdout) == [1, 1]
    res = runner.invoke(app, ["tag", *files, "--format", "jsonl"], env={"AUTOTAG_TOP_K": "4"})
    assert _leaf_counts(res.stdout) == [min(4, n) for n in full]


def test_batch_jobs_take_unset_values_from_the_settings(clean_env, monkeypatch):
    from autotag.distributed.runner import BatchJob

    job = BatchJob().resolved()
    assert (job.model, job.top_k, job.threshold, job.batch_size) == (
        Settings.model, Settings.top_k, Settings.threshold, Settings.batch_size)
    monkeypatch.setenv("AUTOTAG_BATCH_SIZE", "5")
    monkeypatch.setenv("AUTOTAG_TOP_K", "2")
    job = BatchJob(top_k=9).resolved()
    assert (job.top_k, job.batch_size) == (9, 5)


def test_encoder_threads_come_from_the_settings(clean_env, monkeypatch, encoder):
    from autotag.encoders import Encoder

    def threads(enc: Encoder) -> int:
        return enc._session.get_session_options().intra_op_num_threads

    monkeypatch.setenv("AUTOTAG_THREADS", "1")
    assert threads(Encoder(encoder.spec, encoder.onnx_path)) == 1
    assert threads(Encoder(encoder.spec, encoder.onnx_path, threads=2)) == 2  # an explicit value wins


def test_one_parser_and_one_normal_form_for_user_tags():
    assert parse_user_tags("cat, #Beach; sunset\n cat ,,CAT") == ["cat", "Beach", "sunset"]
    assert parse_user_tags(["#street_photo", "Street Photo", " "]) == ["street_photo"]
    assert parse_user_tags(None) == [] and parse_user_tags("") == []
    assert len(parse_user_tags(",".join(f"t{i}" for i in range(300)))) == 100
    assert parse_user_tags("x" * 500) == ["x" * 200]
    assert normalise_user_tag(" #Street_Photo  Day ") == "street photo day"
    assert loose_tag_key("#Street_Photography ") == loose_tag_key("street-photography") == "streetphotography"
