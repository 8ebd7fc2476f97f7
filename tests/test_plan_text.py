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
