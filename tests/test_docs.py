"""The docs site builds with no warning: `mkdocs build --strict` (mkdocs.yml, docs/).

Broken links between pages, pages left out of the nav, and API pages whose objects
cannot be found in the source (read statically by griffe, nothing imported) all fail it.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    for page in ("index.html", "bad-input/index.html", "api/client/index.html", "api/solvers/index.html"):
        assert (site / page).is_file(), page
    client_page = (site / "api/client/index.html").read_text()
    assert 'id="monge.client.Client.sinkhorn"' in client_page
    assert 'id="monge.solvers.sinkhorn.sinkhorn"' in (site / "api/solvers/index.html").read_text()
