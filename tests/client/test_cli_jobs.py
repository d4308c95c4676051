"""`monge jobs ...`, `monge batch ...` and `monge solve exact|sparsity`: the real CLI
(`main(argv)` in this process) against the real test server."""

import json

import numpy as np
import ot
import pytest

from monge.client import requests
from monge.client.cli import main
from helpers import slow_sinkhorn, wait_until


def _run(capsys, *argv):
    """Run `monge ARGV`; (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _points(seed, n=20, m=25, d=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 1.0






def _uniform(n):
    return np.full(n, 1.0 / n)


def test_batch_one_bad_file_fails_alone(server, tmp_path, capsys):
    x1, y1 = _points(1)
    x2, y2 = _points(2, n=15, m=10)
    np.savez(tmp_path / "first.npz", x=x1, y=y1)
    np.savez(tmp_path / "bad.npz", x=x1, y=np.ones((25, 3)))  # dimensions disagree: the server refuses it
    np.savez(tmp_path / "second.npz", cost=ot.dist(x2, y2), a=_uniform(15), b=_uniform(10))
    files = [tmp_path / "first.npz", tmp_path / "bad.npz", tmp_path / "second.npz"]
    out = tmp_path / "results"

    code, stdout, stderr = _run(capsys, "batch", *files, "--target", server.target, "--epsilon", "0.5",
                                "--threshold", "1e-10", "--out", out, "--progress")

    assert code == 3  # one file failed
    assert sorted(p.name for p in out.iterdir()) == ["first.result.npz", "second.result.npz"]
    for name, (x, y) in (("first", (x1, y1)), ("second", (x2, y2))):
        saved = np.load(out / f"{name}.result.npz")
        reference = ot.sinkhorn2(_uniform(len(x)), _uniform(len(y)), ot.dist(x, y), 0.5, stopThr=1e-13)
        assert float(saved["cost"]) == pytest.approx(reference, rel=1e-6)
        assert bool(saved["converged"]) and saved["f"].shape == (len(x),)
        assert f"{name}.npz: cost" in stdout
    errors = [line for line in stderr.splitlines() if "bad.npz" in line]
    assert len(errors) == 1
    assert "INVALID_ARGUMENT: y: " in errors[0] and "items[" not in errors[0]
    assert "3/3" in stderr  # the progress bar reached the end
    assert "Traceback" not in stderr


def test_batch_unreadable_file_is_left_out(server, tmp_path, capsys):
    x, y = _points(3, n=12, m=12)
    np.savez(tmp_path / "good.npz", x=x[:, :1], y=y[:, :1])
    (tmp_path / "junk.npz").write_text("not numpy")
    np.savez(tmp_path / "typo.npz", X=x, y=y)
    code, stdout, stderr = _run(capsys, "batch", tmp_path / "good.npz", tmp_path / "junk.npz",
                                tmp_path / "typo.npz", "--solver", "exact", "--p", "1",
                                "--target", server.target)
    assert code == 3
    assert "junk.npz: not an .npz archive" in stderr and "typo.npz: unexpected arrays ['X']" in stderr
    reference = ot.wasserstein_1d(x[:, 0], y[:, 0], p=1)
    assert "good.npz: cost" in stdout and f"distance {reference:.6f}"[:-1] in stdout
    assert "Traceback" not in stderr


def test_batch_lone_bad_file_and_options_that_do_not_apply(server, tmp_path, capsys):
    x, _ = _points(4)
    np.savez(tmp_path / "bad.npz", x=x, y=np.ones((5, 3)))
    code, _, stderr = _run(capsys, "batch", tmp_path / "bad.npz", "--target", server.target)
    assert code == 3
    # A one-item job is checked at submission; the refusal is still that file's own line.
    assert stderr == f"monge: {tmp_path / 'bad.npz'}: INVALID_ARGUMENT: y: has dimension 3 but x has dimension 2\n"
    with pytest.raises(SystemExit, match="--epsilon does not apply to --solver exact"):
        main(["batch", str(tmp_path / "bad.npz"), "--solver", "exact", "--epsilon", "0.1"])
    with pytest.raises(SystemExit, match="method must be one of"):
        main(["batch", str(tmp_path / "bad.npz"), "--method", "fast"])


def test_batch_no_wait_then_jobs_watch_get_list(server, tmp_path, capsys):
    for i in range(2):
        x, y = _points(10 + i, n=10, m=8)
        np.savez(tmp_path / f"p{i}.npz", x=x, y=y)
    code, stdout, _ = _run(capsys, "batch", tmp_path / "p0.npz", tmp_path / "p1.npz", "--solver", "sparsity",
                           "--k", "4", "--no-wait", "--target", server.target)
    assert code == 0
    job_id = stdout.strip()

    code, stdout, _ = _run(capsys, "jobs", "watch", job_id, "--target", server.target)
    assert code == 0
    assert f"job {job_id}: succeeded" in stdout and "(2 items, 0 failed)" in stdout
    assert "item 0: cost" in stdout and "item 1: cost" in stdout

    code, stdout, _ = _run(capsys, "jobs", "get", job_id, "--json", "--out", tmp_path / "got",
                           "--target", server.target)
    assert code == 0
    described = json.loads(stdout[:stdout.rindex("}") + 1])
    assert described["state"] == "succeeded" and described["item_count"] == 2
    assert [r["ok"] for r in described["results"]] == [True, True]
    x, y = _points(11, n=10, m=8)
    saved = np.load(tmp_path / "got" / "item-001.npz")
    assert float(saved["cost"]) == pytest.approx(described["results"][1]["cost"])
    plan = np.zeros(tuple(saved["plan_shape"]))
    plan[saved["plan_rows"], saved["plan_cols"]] = saved["plan_values"]
    assert plan.sum(axis=0) == pytest.approx(_uniform(8), abs=1e-6)
    assert (np.count_nonzero(plan, axis=0) <= 4).all()

    code, stdout, _ = _run(capsys, "jobs", "get", job_id, "--target", server.target)
    assert code == 0 and "state       succeeded (2 items, 0 failed, attempt 1)" in stdout

    code, stdout, _ = _run(capsys, "jobs", "list", "--state", "succeeded", "--target", server.target)
    assert code == 0 and job_id in stdout and stdout.startswith("JOB")
    code, stdout, _ = _run(capsys, "jobs", "list", "--json", "--state", "cancelled", "--target", server.target)
    assert job_id not in {j["job_id"] for j in json.loads(stdout)}


def test_jobs_watch_prints_progress_then_status(client, server, capsys):
    job = client.submit(slow_sinkhorn(seed=1, iterations=30_000))
    code, stdout, stderr = _run(capsys, "jobs", "watch", job.job_id, "--target", server.target)
    assert code == 0, stderr
    lines = stdout.splitlines()
    running = [line for line in lines if line.startswith("running") and "iteration" in line]
    assert running, stdout
    iterations = [int(line.split("iteration ")[1].split()[0]) for line in running]
    assert iterations == sorted(iterations) and iterations[-1] > 0
    assert all("error " in line and "elapsed " in line for line in running)
    assert f"job {job.job_id}: succeeded" in stdout
    assert "item 0: cost" in stdout and "after 30000 iterations" in stdout


def test_jobs_cancel(client, server, capsys):
    job = client.submit(slow_sinkhorn(seed=2))
    wait_until(lambda: client.job(job).state == "running")
    code, stdout, _ = _run(capsys, "jobs", "cancel", job.job_id, "--target", server.target)
    assert code == 0 and stdout.strip() == f"job {job.job_id}: cancelled"
    code, stdout, _ = _run(capsys, "jobs", "watch", job.job_id, "--target", server.target)
    assert code == 3 and "cancelled" in stdout and "CANCELLED: cancelled by a caller" in stdout
    code, stdout, _ = _run(capsys, "jobs", "cancel", job.job_id, "--target", server.target)
    assert code == 0 and stdout.strip() == f"job {job.job_id}: cancelled"  # cancelling again is harmless
    code, stdout, _ = _run(capsys, "jobs", "list", "--state", "cancelled", "--target", server.target)
    assert job.job_id in stdout

    x, y = _points(3, n=5, m=5)
    finished = client.wait(client.submit(requests.sinkhorn(x, y, epsilon=1.0)))
    code, stdout, _ = _run(capsys, "jobs", "cancel", finished.job_id, "--target", server.target)
    assert code == 3 and stdout.strip() == f"job {finished.job_id}: already succeeded, not cancelled"


def test_server_errors_are_one_line(server, capsys):
    code, stdout, stderr = _run(capsys, "jobs", "get", "no-such-job", "--target", server.target)
    assert code == 2 and stdout == ""
    assert stderr == "monge: NOT_FOUND: no job 'no-such-job'\n"
    code, _, stderr = _run(capsys, "jobs", "list", "--target", "127.0.0.1:1", "--timeout", "5")
    assert code == 2 and stderr.startswith("monge: UNAVAILABLE: ") and stderr.count("\n") == 1


def test_solve_exact_and_sparsity(server, tmp_path, capsys):
    x, y = _points(5, n=15, m=12)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "p.npz", x=x[:10], y=y[:8])  # the sparsity problem's size in the batch test
    code, stdout, _ = _run(capsys, "solve", "exact", "--x", tmp_path / "x.npy", "--y", tmp_path / "y.npy",
                           "--out", tmp_path / "e.npz", "--target", server.target)
    assert code == 0 and "network_simplex" in stdout
    saved = np.load(tmp_path / "e.npz")
    reference = ot.emd2(_uniform(15), _uniform(12), ot.dist(x, y))
    assert float(saved["cost"]) == pytest.approx(reference, rel=1e-9)
    assert float(saved["distance"]) == pytest.approx(np.sqrt(reference), rel=1e-9)

    code, stdout, _ = _run(capsys, "solve", "sparsity", "--problem", tmp_path / "p.npz", "--k", "4",
                           "--out", tmp_path / "s.npz", "--target", server.target)
    saved = np.load(tmp_path / "s.npz")
    assert code == 0 and "converged" in stdout and "per column" in stdout
    assert bool(saved["converged"]) and int(saved["max_nonzeros_per_column"]) <= 4

    code, _, stderr = _run(capsys, "solve", "exact", "--problem", tmp_path / "p.npz", "--p", "0",
                           "--target", server.target)
    assert code == 2 and stderr.startswith("monge: INVALID_ARGUMENT: p: ") and stderr.count("\n") == 1


def test_plain_progress_bar_without_tqdm(monkeypatch, capsys):
    from monge.client.cli_batch import ProgressBar

    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # as if tqdm were not installed
    bar = ProgressBar(4, enabled=True)
    bar.update(1, "item 0: iteration 10")
    bar.update(4, "succeeded")
    bar.close()
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\r") == 3
    assert "batch [" + "#" * 30 + "] 4/4 succeeded" in err
    quiet = ProgressBar(4, enabled=False)
    quiet.update(4, "succeeded")
    quiet.close()
    assert capsys.readouterr().err == ""


def test_priority_flag_reaches_the_server(server, tmp_path, capsys):
    x, y = _points(3)
    np.savez(tmp_path / "p.npz", x=x, y=y)
    code, stdout, stderr = _run(capsys, "batch", tmp_path / "p.npz", "--target", server.target, "--priority", "1",
                                "--epsilon", "0.5")
    assert code == 0 and "p.npz: cost" in stdout
    # Beyond the server's levels (2 by default): refused by the server, naming the field.
    code, stdout, stderr = _run(capsys, "batch", tmp_path / "p.npz", "--target", server.target, "--priority", "5")
    assert code != 0 and "INVALID_ARGUMENT" in stderr and "priority" in stderr and "Traceback" not in stderr
    with pytest.raises(SystemExit):  # not a level at all: refused before anything is sent
        main(["batch", str(tmp_path / "p.npz"), "--target", server.target, "--priority", "0"])
    assert "a queue level is a whole number from 1" in capsys.readouterr().err
