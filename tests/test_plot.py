"""`trainnet plot`: run logs (trainnet's JSON lines, Caffe's text) to PNG, SVG and PDF, driven as
a user would; the series read from a log equal the values written; bad input is one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from hostile import assert_one_error, cli
from trainnet.tools.plot_log import moving_average, read_log

pytest.importorskip("matplotlib")


def train(it, loss, lr=0.01, seconds=None, smoothed=None):
    return {"event": "train", "iter": it, "loss": loss, "smoothed_loss": loss if smoothed is None
            else smoothed, "lr": lr, "seconds": it / 10 if seconds is None else seconds}


def outputs_at(it, net=0, **outputs):
    return {"event": "test", "iter": it, "net": net, "outputs": outputs}


def write_log(path, records, tail="\n"):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + tail)
    return path


def two_runs(tmp_path):
    """Two runs of 10 displayed iterations, two test nets each; returns their paths."""
    paths = []
    for name, scale in (("alpha_log.jsonl", 1.0), ("beta_log.jsonl", 0.5)):
        records = []
        for it in range(0, 100, 10):
            if it % 50 == 0:
                records += [outputs_at(it, 0, accuracy=it / 100 * scale, loss=2 - it / 100),
                            outputs_at(it, 1, accuracy=it / 200, loss=2.5 - it / 100)]
            records.append(train(it, 2 * scale * np.exp(-it / 50), lr=0.01 / (1 + it),
                                 smoothed=2 * np.exp(-it / 50)))
            records.append({"event": "data", "iter": it, "message": "3 records skipped"})
        paths.append(write_log(tmp_path / name, records))
    return paths


# --- the series read from a log -----------------------------------------------------------------

def test_the_series_read_are_the_values_written(tmp_path):
    path = write_log(tmp_path / "run_log.jsonl", [
        outputs_at(0, accuracy=0.25, loss=1.5, probs=[0.1, 0.9]),
        train(0, 1.5, lr=0.1, seconds=0.5, smoothed=1.5),
        train(10, 1.0, lr=0.05, seconds=1.5, smoothed=1.25),
        outputs_at(20, 1, accuracy=0.75),
        {"event": "test", "iter": 20, "net": 0, "error": "the output 'loss' is nan"},
        train(20, 0.5, lr=0.025, seconds=2.5, smoothed=1.0),
        {"event": "something new", "iter": 20}])
    run = read_log(path)
    assert run.iterations().tolist() == [0, 10, 20]
    assert run.train_series("loss").tolist() == [1.5, 1.0, 0.5]
    assert run.train_series("smoothed").tolist() == [1.5, 1.25, 1.0]
    assert run.train_series("lr").tolist() == [0.1, 0.05, 0.025]
    assert run.train_series("seconds").tolist() == [0.5, 1.5, 2.5]
    assert sorted(run.tests) == [(0, "accuracy"), (0, "loss"), (1, "accuracy")]  # no array
    its, values = run.test_series(0, "accuracy")
    assert its.tolist() == [0] and values.tolist() == [0.25]
    assert run.test_series(1, "accuracy")[1].tolist() == [0.75]
    assert run.seconds_at(np.array([0, 5, 20])).tolist() == [0.5, 1.0, 2.5]
    assert not run.notes


def test_a_resumed_run_keeps_the_newest_values_and_its_time_goes_on(tmp_path):
    """After a resume from iteration 20 the abandoned run's records from 20 on are gone; the
    resumed run's clock starts again at 0, and its seconds follow the last kept ones."""
    first = [train(it, 1.0, seconds=it / 10) for it in range(0, 40, 10)] + [outputs_at(30, accuracy=0.1)]
    resumed = [{"event": "resume", "iter": 20}, outputs_at(20, accuracy=0.6)] + \
        [train(it, 0.5, seconds=(it - 20) / 10 + 0.05) for it in range(20, 50, 10)]
    run = read_log(write_log(tmp_path / "r_log.jsonl", first + resumed))
    assert run.iterations().tolist() == [0, 10, 20, 30, 40]
    assert run.train_series("loss").tolist() == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert np.allclose(run.train_series("seconds"), [0, 1, 1.05, 2.05, 3.05])
    assert dict(zip(*map(list, run.test_series(0, "accuracy")))) == {20: 0.6}
    # the same log without the resume event: the repeated iterations still take the newest
    unannounced = read_log(write_log(tmp_path / "u_log.jsonl", first + resumed[1:]))
    assert unannounced.train_series("loss").tolist() == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert unannounced.test_series(0, "accuracy")[1].tolist() == [0.6, 0.1]
    assert np.all(np.diff(unannounced.train_series("seconds")) > 0)


def test_moving_average():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    assert moving_average(values, 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert moving_average(values, 1).tolist() == values.tolist()


CAFFE_LOG = """\
I1203 23:59:58.000000 25210 solver.cpp:280] Solving LeNet
I1203 23:59:58.500000 25210 solver.cpp:330] Iteration 0, Testing net (#0)
I1203 23:59:59.000000 25210 solver.cpp:397]     Test net output #0: accuracy = 0.1
I1203 23:59:59.000000 25210 solver.cpp:397]     Test net output #1: loss = 2.3 (* 1 = 2.3 loss)
I1203 23:59:59.500000 25210 solver.cpp:218] Iteration 0 (0 iter/s, 1.5s/100 iters), loss = 2.31
I1203 23:59:59.500000 25210 solver.cpp:237]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I1203 23:59:59.500000 25210 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1204 00:00:01.500000 25210 solver.cpp:218] Iteration 100 (50 iter/s, 2s/100 iters), loss = 0.5
I1204 00:00:01.500000 25210 solver.cpp:237]     Train net output #0: loss = 0.25 (* 1 = 0.25 loss)
I1204 00:00:01.500000 25210 solver.cpp:237]     Train net output #1: aux = 0.5 (* 0.5 = 0.25 loss)
I1204 00:00:01.500000 25210 sgd_solver.cpp:105] Iteration 100, lr = 0.0092
I1204 00:00:02.000000 25210 solver.cpp:330] Iteration 100, Testing net (#0)
I1204 00:00:02.500000 25210 solver.cpp:397]     Test net output #0: accuracy = 0.9
I1204 00:00:02.500000 25210 solver.cpp:397]     Test net output #1: loss = 0.3 (* 1 = 0.3 loss)
"""


def test_caffe_text_log_reads_as_parse_log_does(tmp_path):
    run = read_log(write_log(tmp_path / "caffe.INFO", [CAFFE_LOG], tail=""))
    assert run.iterations().tolist() == [0, 100]
    assert run.train_series("smoothed").tolist() == [2.31, 0.5]
    assert run.train_series("loss").tolist() == [2.31, 0.5]  # 0.25 + 0.5 * 0.5
    assert run.train_series("lr").tolist() == [0.01, 0.0092]
    assert run.train_series("seconds").tolist() == [1.5, 3.5]  # across midnight
    assert run.test_series(0, "accuracy")[1].tolist() == [0.1, 0.9]
    assert run.test_series(0, "loss")[0].tolist() == [0, 100]


def test_trainnet_text_progress_lines_read_too(tmp_path):
    text = ("Iteration 0, Testing net (#0): accuracy = 0.25, loss = 1.4\n"
            "Iteration 0 (3.0 iter/s), loss = 1.5, lr = 0.05\nIteration 10, loss = 1.1, lr = 0.04\n")
    run = read_log(write_log(tmp_path / "train.txt", [text], tail=""))
    assert run.train_series("smoothed").tolist() == [1.5, 1.1]
    assert run.train_series("lr").tolist() == [0.05, 0.04]
    assert run.test_series(0, "loss")[1].tolist() == [1.4]


# --- the command --------------------------------------------------------------------------------

def test_two_runs_to_png_of_the_size_asked(tmp_path):
    out = tmp_path / "curves.png"
    result = cli("plot", *two_runs(tmp_path), "-o", out, "--size", "800x600")
    assert result.code == 0, result.stderr
    assert str(out) in result.stdout and not result.stderr
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (800, 600)
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # drawn
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary


@pytest.mark.parametrize("x", ["iterations", "seconds"])
def test_two_runs_to_svg_name_the_runs_and_axes(tmp_path, x):
    out = tmp_path / "curves.svg"
    result = cli("plot", *two_runs(tmp_path), "-o", out, "--x", x, "--smooth", "3")
    assert result.code == 0, result.stderr
    svg = out.read_text()
    for text in ("alpha_log.jsonl", "beta_log.jsonl", "training loss", "test accuracy",
                 "test loss", "learning rate", "test net #1", "moving average of 3",
                 "iteration" if x == "iterations" else "seconds"):
        assert text in svg, text


def test_a_real_training_run_plots(tmp_path):
    """A run of 40 iterations, resumed from its snapshot at 20 and trained to 60: the series are
    the resumed run's values from 20 on, as written, and the log plots."""
    from synthetic import write_project
    from trainnet.netcfg import load_solver
    from trainnet.solver.solver import Solver

    cfg = load_solver(write_project(tmp_path, max_iter=60, snapshot=20))
    Solver(cfg.model_copy(update={"max_iter": 40})).solve()
    resumed = Solver(cfg)
    resumed.restore(next((tmp_path / "out").glob("tiny_iter_20.solverstate*")))
    resumed.solve()
    log = tmp_path / "out/tiny_log.jsonl"
    run = read_log(log)
    newest = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["event"] in ("train", "test"):
            newest[record["event"], record["iter"]] = record
    trains = [newest["train", it] for it in range(0, 60, 10)]
    assert run.iterations().tolist() == list(range(0, 60, 10))
    assert run.train_series("loss").tolist() == [r["loss"] for r in trains]
    assert run.train_series("lr").tolist() == [r["lr"] for r in trains]
    assert np.all(np.diff(run.train_series("seconds")) > 0)
    its, accuracy = run.test_series(0, "accuracy")
    assert accuracy.tolist() == [newest["test", it]["outputs"]["accuracy"] for it in its]
    for out in (tmp_path / "tiny.png", tmp_path / "tiny.pdf"):
        result = cli("plot", log, "-o", out, "--x", "seconds")
        assert result.code == 0 and not result.stderr, result.stderr
    with Image.open(tmp_path / "tiny.png") as image:
        assert image.size[0] == 1000
    assert (tmp_path / "tiny.pdf").read_bytes().startswith(b"%PDF")


def test_a_caffe_log_and_a_trainnet_log_on_one_figure(tmp_path):
    caffe = write_log(tmp_path / "caffe.INFO", [CAFFE_LOG], tail="")
    out = tmp_path / "both.svg"
    result = cli("plot", caffe, two_runs(tmp_path)[0], "-o", out)
    assert result.code == 0, result.stderr
    assert "caffe.INFO" in out.read_text() and "alpha_log.jsonl" in out.read_text()


def test_same_file_names_are_told_apart(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    logs = [write_log(tmp_path / d / "x_log.jsonl", [train(0, 1.0), train(10, 0.5)]) for d in "ab"]
    out = tmp_path / "same.svg"
    assert cli("plot", *logs, "-o", out).code == 0
    assert str(logs[0]) in out.read_text() and str(logs[1]) in out.read_text()


def test_a_cut_off_last_line_is_left_out_with_a_note(tmp_path):
    log = write_log(tmp_path / "cut_log.jsonl", [train(0, 1.0), train(10, 0.5), '{"event": "tr'],
                    tail="")
    result = cli("plot", log, "-o", tmp_path / "cut.png")
    assert result.code == 0
    assert result.stderr.startswith(f"note: {log}:3: the last line is cut off")
    assert read_log(log).iterations().tolist() == [0, 10]


# --- bad input: one line, non-zero exit, nothing written ----------------------------------------

@pytest.mark.parametrize("records, fragments", [
    ([train(0, 1.0), "{not json", train(10, 0.5)], [":2: not a JSON record", "damaged"]),
    ([train(0, 1.0), "[1, 2]"], [":2: not a run log record", "list"]),
    ([train(0, 1.0), {"event": "train", "iter": 10, "loss": "low"}], [":2:", "loss is 'low'"]),
    ([{"event": "train", "loss": 1.0}], [":1:", "no 'iter'"]),
    ([outputs_at(0, accuracy=0.5)], ["no training records"]),
])
def test_a_damaged_log_is_one_line(tmp_path, records, fragments):
    log = write_log(tmp_path / "bad_log.jsonl", records)
    out = tmp_path / "bad.png"
    assert_one_error(cli("plot", log, "-o", out), str(log), *fragments)
    assert not out.exists()


def test_missing_and_unreadable_logs(tmp_path):
    assert_one_error(cli("plot", tmp_path / "none_log.jsonl", "-o", tmp_path / "a.png"),
                     "none_log.jsonl: cannot read the log")
    (tmp_path / "folder.jsonl").mkdir()
    assert_one_error(cli("plot", tmp_path / "folder.jsonl", "-o", tmp_path / "a.png"),
                     "folder.jsonl")
    assert_one_error(cli("plot", "-o", tmp_path / "a.png"), "Missing argument", code=2)


def test_an_empty_or_foreign_text_file(tmp_path):
    empty = write_log(tmp_path / "empty.log", [""], tail="")
    assert_one_error(cli("plot", empty, "-o", tmp_path / "a.png"), "no training records")


def test_unknown_output_suffix(tmp_path):
    log = two_runs(tmp_path)[0]
    for name in ("curves.gif", "curves"):
        assert_one_error(cli("plot", log, "-o", tmp_path / name), "unknown image type", ".png")
    assert_one_error(cli("plot", log, "-o", tmp_path / "a.png", "--size", "big"), "WIDTHxHEIGHT",
                     code=2)


def test_seconds_need_times(tmp_path):
    text = "Iteration 0, loss = 1.5\nIteration 10, loss = 1.1\n"
    log = write_log(tmp_path / "plain.txt", [text], tail="")
    assert_one_error(cli("plot", log, "-o", tmp_path / "a.png", "--x", "seconds"),
                     "plain.txt: the log has no times", "--x iterations")
    assert cli("plot", log, "-o", tmp_path / "a.png").code == 0


def test_without_matplotlib_one_line_says_what_to_install(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    assert_one_error(cli("plot", two_runs(tmp_path)[0], "-o", tmp_path / "a.png"),
                     'pip install "trainnet[plot]"')
