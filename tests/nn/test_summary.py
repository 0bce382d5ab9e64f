import re

from pipeline.nn.__main__ import main


def test_summary_prints_shapes_parameters_and_multiply_adds(capsys, tmp_path):
    assert main(["summary", "resnet20", "--plot", str(tmp_path / "resnet20.png")]) == 0
    output = capsys.readouterr().out
    assert "weighted layers (depth): 20" in output
    assert "(0.27M)" in output
    # He et al. 2015 give ResNet-20 about 41 million multiply-adds on 32x32 images.
    macs = int(re.search(r"multiply-adds per image: ([\d,]+)", output).group(1).replace(",", ""))
    assert 40e6 < macs < 42e6
    assert re.search(r"stage3\s+\(8, 8, 64\)", output)
    # Drawing needs pydot and graphviz: either the file or a one-line reason.
    assert "drawing:" in output or "no drawing:" in output


def test_per_layer_rows_and_list(capsys):
    assert main(["summary", "resnet20", "--layers", "--input-shape", "64,64,3"]) == 0
    output = capsys.readouterr().out
    assert re.search(r"stage1_block1_conv1\s+Conv2D\s+\(64, 64, 16\)\s+2,304", output)
    assert main(["list"]) == 0
    assert "reference_cifar_preact_resnet83" in capsys.readouterr().out


def test_unknown_preset_and_bad_shape_are_one_line_errors(capsys):
    assert main(["summary", "resnet21"]) == 2
    assert main(["summary", "resnet20", "--input-shape", "a,b"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
