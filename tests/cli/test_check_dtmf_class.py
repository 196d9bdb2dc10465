"""`callguard run asterisk --check` reads manager.conf and says when the AMI user cannot see the caller's keys."""

from __future__ import annotations

from pathlib import Path

from callguard.adapters.asterisk.amiuser import read_classes
from callguard.testing.fake_asterisk import FakeAsterisk

from .test_run_check import SECRET, run_check

SHIPPED = Path(__file__).parents[2] / "dialplan" / "asterisk" / "manager_callguard.conf"


def site_manager_conf(tmp_path: Path, user_section: str) -> Path:
    path = tmp_path / "manager.conf"
    path.write_text("[general]\nenabled = yes\nport = 5038\n\n" + user_section)
    return path


def test_the_shipped_user_reads_dtmf_through_an_include(tmp_path) -> None:
    conf = site_manager_conf(tmp_path, f'#include "{SHIPPED}"\n')
    found = read_classes(conf, "callguard")
    assert found is not None and found.has_dtmf and found.where.startswith(f"{SHIPPED}:")


def test_templates_and_the_last_read_line_decide(tmp_path) -> None:
    conf = site_manager_conf(tmp_path, "[base](!)\nread = call,dtmf\n\n[callguard](base)\nsecret = x\n\n"
                                       "[narrow](base)\nread = call,agi\n\n[twice]\nread = all\nread = call\n")
    assert read_classes(conf, "callguard").has_dtmf  # inherited from the template
    assert not read_classes(conf, "narrow").has_dtmf  # its own line replaces the template's
    assert read_classes(conf, "twice").classes == {"call"}  # each read = replaces the mask
    assert read_classes(conf, "nobody") is None


async def test_check_fails_when_payments_are_on_and_the_user_lacks_dtmf(tmp_path) -> None:
    conf = site_manager_conf(tmp_path, "[callguard]\nsecret = x\nread = call,agi,user,system\n")
    async with FakeAsterisk(secret=SECRET) as pbx:
        base = f'[asterisk]\nport = {pbx.port}\nsecret = "{SECRET}"\n'
        code, out = await run_check(tmp_path, "asterisk", base + '[payments]\nurl = "https://pay.example"\n',
                                    "--manager-conf", str(conf))
        assert code == 1, out
        assert f"lacks the dtmf read class ({conf}:7: read = agi,call,system,user)" in out
        assert "read = agi,call,dtmf,system,user" in out and "manager reload" in out
        # without payments it is a warning, and the check passes
        code, out = await run_check(tmp_path, "asterisk", base, "--manager-conf", str(conf))
        assert code == 0 and "warning: the AMI user 'callguard' lacks the dtmf read class" in out, out
        conf.write_text(conf.read_text().replace("system\n", "system,dtmf\n"))
        code, out = await run_check(tmp_path, "asterisk", base + '[payments]\nurl = "https://pay.example"\n',
                                    "--manager-conf", str(conf))
        assert code == 0 and f"ok: {conf}: the AMI user 'callguard' reads dtmf (card payments)" in out, out
