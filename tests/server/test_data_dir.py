"""One server per data dir: a second one refuses to start, naming the dir and the holder."""

import os
import subprocess
import sys

import pytest

from monge.server.data_dir import DataDirInUse


def test_a_second_server_on_a_held_data_dir_refuses(make_server, tmp_path):
    first = make_server(data_dir=str(tmp_path))
    with pytest.raises(DataDirInUse) as refused:
        make_server(data_dir=str(tmp_path))
    message = str(refused.value)
    assert str(tmp_path) in message and f"pid {os.getpid()}" in message and first.target in message
    first.stop()
    again = make_server(data_dir=str(tmp_path))  # released on stop: the dir is free again
    assert again.target


def test_monge_serve_on_a_held_data_dir_exits_naming_it(make_server, tmp_path):
    holder = make_server(data_dir=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "monge.client.cli", "serve", "--port", "0", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode != 0
    assert f"data dir {tmp_path} is in use by another monge server" in done.stderr
    assert holder.target in done.stderr and "--data-dir" in done.stderr
