"""`config check --features`: callguard's hotkeys against the PBX's own feature codes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from callguard.cli import main

SHIPPED = Path(__file__).parents[2] / "dialplan" / "asterisk" / "features_callguard.conf"

FREEPBX_STYLE = """\
[general]
featuredigittimeout = 1000
[featuremap]
blindxfer => ##        ; In-Call Asterisk Blind Transfer
disconnect => **       ; In-Call Asterisk Disconnect Code
atxfer => *2           ; In-Call Asterisk Attended Transfer
automixmon => *1       ; In-Call Asterisk Toggle Call Recording
[applicationmap]
#include features_callguard.conf
"""


def check(tmp_path: Path, features: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    config = tmp_path / "callguard.toml"
    config.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path / "l.sqlite"}"\n')
    return CliRunner().invoke(main, ["config", "check", str(config), "--features", str(features)], env=env)


def test_the_shipped_hotkeys_do_not_collide_with_a_stock_freepbx_featuremap(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "features_callguard.conf")
    (tmp_path / "features.conf").write_text(FREEPBX_STYLE)
    result = check(tmp_path, tmp_path / "features.conf")
    assert result.exit_code == 0, result.output
    assert ("hotkeys:  callguard_pause *6, callguard_resume *7, callguard_card *8, callguard_card_cancel *9: "
            "no collision with") in result.output
    assert "hotkeys:  WARNING" not in result.output


def test_a_colliding_code_is_named_with_both_places(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "features_callguard.conf")
    (tmp_path / "features.conf").write_text(FREEPBX_STYLE.replace("atxfer => *2", "atxfer => *6")
                                            .replace("disconnect => **", "disconnect => *"))
    result = check(tmp_path, tmp_path / "features.conf")
    assert result.exit_code == 0, result.output  # a warning: the site may mean it
    out = result.output
    assert (f"WARNING: callguard_pause '*6' ({(tmp_path / 'features_callguard.conf').resolve()}:") in out
    assert f"is the same code as [featuremap] atxfer '*6' ({(tmp_path / 'features.conf').resolve()}:6)" in out
    assert "callguard_resume '*7'" in out and "overlaps (one is a prefix of the other) [featuremap] disconnect '*'" in out


def test_without_the_include_the_shipped_codes_are_checked(tmp_path):
    (tmp_path / "features.conf").write_text("[featuremap]\natxfer => *7\n")
    result = check(tmp_path, tmp_path / "features.conf")
    assert "WARNING: callguard_resume '*7' (shipped default) is the same code as [featuremap] atxfer" in result.output
