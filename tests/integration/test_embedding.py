"""
docs/examples/embed.py runs as documented.
"""

import os
import re
import subprocess
import sys

from tests.integration.support import REPO


def test_embeddingExampleRuns(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "docs", "examples", "embed.py")],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(tmp_path)),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+, storage under .*", lines[0])
    processed = sorted(line.split(", ", 2)[2] for line in lines if ": uid " in line)
    assert processed == ["Subject: over SMTP", "Subject: submitted"]
    assert "submit: {'app@example.test': 'delivered'}" in lines
    assert len(lines) == 4
