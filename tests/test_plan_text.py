"""The plan as text: what `trainnet plan` prints."""

from trainnet.netcfg import load_net
from trainnet.plan import compile_net, format_plan

from plan_cases import LENET, lenet_with_input


def test_format_plan_lenet_train(mnist_dir, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    plan = compile_net(load_net(LENET), "TRAIN")
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0] == "net 'LeNet'  phase TRAIN  (forward + backward, 8 steps)"
    rows = {line.split()[1]: line for line in lines[4:4 + len(plan.steps)]}
    assert list(rows) == ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"]
    assert "accuracy" not in text  # TEST only
    assert rows["ip1"].rstrip().endswith("fused relu1")  # the in-place ReLU, in ip1's epilogue
    assert "64x20x24x24" in rows["conv1"] and "64x500" in rows["ip1"]
    assert "no backward" in rows["mnist"] and "loss 1" in rows["loss"]
    assert "in place" not in rows["ip1"]
    unfused = format_plan(compile_net(load_net(LENET), "TRAIN", fuse=False)).splitlines()
    relu = next(line for line in unfused if line.split()[1:2] == ["relu1"])
    assert relu.rstrip().endswith("in place")
    assert "parameters:        431,080 (1.6 MiB)" in lines
    for label in ("activations:       ", "activation arena:  "):
        memory = [l for l in lines if l.startswith(label)]
        assert len(memory) == 1 and "with reuse" in memory[0] and "without" in memory[0]
    assert "outputs:           loss" in lines


def test_format_plan_shows_inserted_splits_and_forward_only():
    text = format_plan(compile_net(lenet_with_input(), "TEST"))
    assert "(forward only, 11 steps)" in text.splitlines()[0]  # relu1 fused into ip1
    assert "inserted split" in text and "label_input_1_split" in text and "ip2_ip2_0_split" in text
    assert "parameters:        431,080 (1.6 MiB)" in text
    assert "outputs:           accuracy, loss" in text


def _too_long(lines, width):
    """Lines over ``width`` that no unbreakable token (one longer than a wrapped column may be)
    explains."""
    return [l for l in lines if len(l) > width and max(map(len, l.split())) < 20]


def test_format_plan_wraps_to_the_width_aligned_under_its_column():
    from trainnet.zoo.registry import net_path

    plan = compile_net(load_net(net_path("googlenet")), "TEST")
    for width in (80, 100):
        lines = format_plan(plan, width).splitlines()
        assert max(map(len, lines)) <= width and not _too_long(lines, width)
        header = lines[2]
        assert header.split() == ["#", "layer", "type", "tops", "params", "flops", "notes"]
        notes_at = header.index("notes")
        row = next(i for i, l in enumerate(lines) if l.split()[:1] == ["8"])  # the inserted split
        assert lines[row][notes_at:].startswith("inserted")
        assert lines[row + 1][:notes_at].strip()  # the split's four tops continue on the next line
        follow = lines[row + 1]  # a continuation: nothing in the columns that do not wrap
        assert not follow[:header.index("layer")].strip()
        assert not follow[header.index("type"):header.index("tops")].strip()
    arena = [l for l in format_plan(plan, 80).splitlines() if l.startswith("activation arena:")]
    assert len(arena) == 1
    unwrapped = format_plan(plan).splitlines()  # no width: one line per step, as before
    # a forward-only plan may keep each step's scratch to its step: no shared workspace
    assert len(unwrapped) == 4 + len(plan.steps) + 6 + bool(plan.workspace_bytes)


def test_plan_command_wraps_to_columns(monkeypatch, mnist_dir):
    from click.testing import CliRunner

    from trainnet.cli import main

    monkeypatch.setenv("COLUMNS", "90")
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    result = CliRunner().invoke(main, ["plan", str(LENET)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 90 and not _too_long(lines, 90)
    assert any(l.startswith("forward only:") for l in lines)
    assert any(l.startswith(" " * 19) for l in lines)  # a summary line continued under its value


def test_forward_only_plans_say_nothing_of_backward():
    from trainnet.zoo.registry import net_path

    for plan in (compile_net(lenet_with_input(), "TRAIN", backward=False),
                 compile_net(load_net(net_path("lenet")), "TRAIN"),  # deploy: no loss
                 compile_net(load_net(net_path("caffenet")), "TEST")):
        text = format_plan(plan, 100)
        assert "forward + backward" not in text and "gradient" not in text.replace("no gradients", "")
        assert "no backward" not in text  # every step is forward only: no need to say it per row
        assert "forward only" in text.splitlines()[0]


def test_plan_command_forward_only_has_no_backward_comparison():
    from click.testing import CliRunner

    from trainnet.cli import main

    out = CliRunner().invoke(main, ["plan", "zoo:caffenet", "--phase", "TEST"]).output
    assert "forward + backward" not in out and "without backward" not in out
    out = CliRunner().invoke(main, ["plan", "zoo:lenet"]).output  # TRAIN, but nothing learns
    assert "forward only: no layer needs backward" in out and "without backward" not in out
