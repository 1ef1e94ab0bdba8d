"""docs/catalog.md runs as written: every ```bash block, in order, in a fresh folder (the real `kiban` command).

Blocks that show refusals (`# error:` lines) must fail with exactly those messages; all others must succeed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "catalog.md"


def blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.slow
def test_every_example_of_the_catalog_page_runs(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200", "NO_COLOR": "1",
           "KIBAN_USER": "doc-reader", "PYTHONIOENCODING": "utf-8"}
    cwd = tmp_path
    found = blocks()
    assert len(found) >= 8
    for block in found:
        expected = re.findall(r"^# error: (.*)$", block, flags=re.M)
        script = f"cd {cwd}\n" + (block if expected else "set -e\n" + block)
        marker = tmp_path / ".cwd-after"
        out = subprocess.run(["bash", "-c", f"{script}\npwd > {marker}"], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=600, check=False)
        for message in expected:
            assert f"error: {message}" in out.stderr, (block, out.stderr)
        if not expected:
            assert out.returncode == 0, (block, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        if marker.exists():  # `cd` inside a block (the first one enters the project)
            cwd = Path(marker.read_text().strip())
    project = tmp_path / "catalog-demo"
    assert (project / "catalog-site" / "index.html").exists()
    assert (project / "models" / "mart" / "big_orders.sql").exists()
    assert (project / "jan.csv").read_text().startswith("order_date,orders,revenue")
