"""
docs/examples/embed.py runs as documented.
"""

import os
import subprocess
import sys

from tests.integration.support import REPO


def test_embeddingExampleRuns(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "docs", "examples", "embed.py")],
        capture_output=True, timeout=120, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(tmp_path)),
    )
    assert out.returncode == 0, out.stderr
    head, _, message = out.stdout.partition(b" bytes:\n")
    first, second = head.split(b"\n")
    assert first.startswith(b"listening on 127.0.0.1:")
    assert second.startswith(b"uid 1, ")
    assert int(second.split(b", ")[1]) == len(message)
    assert message.startswith(
        b"Return-Path: <me@example.net>\r\nReceived: from localhost ([127.0.0.1])\r\n"
    )
    assert message.endswith(
        b"\r\nSubject: hello from the app\r\n\r\nProcessed in Python.\r\n"
    )
