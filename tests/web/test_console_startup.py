"""The console starts beside live calls without holding up the listener's event loop.

FastAPI and uvicorn take seconds to import and the app a while to build; a call arriving
meanwhile must still hear its notice on time.  Run in a fresh interpreter (nothing imported
yet), the probe reports which thread did the heavy work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_web_stack_is_imported_and_built_off_the_event_loop(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("console_startup_probe.py")), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    loop_thread = report["loop"]
    for what in ("fastapi", "uvicorn", "callguard.web.app"):
        assert report["threads"].get(what) not in (None, loop_thread), report
    print(f"longest event-loop gap while the console started: {report['max_gap_s'] * 1000:.0f} ms")
