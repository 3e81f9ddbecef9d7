"""Metavision .bias files: the format OpenEB reads and writes, and errors that name file and line."""

from __future__ import annotations

import pytest

from rig.biasfile import (
    IMX636_BIAS_RANGES,
    BiasFileError,
    format_bias_file,
    load_bias_file,
    parse_bias_text,
)

# What OpenEB's save_to_file writes for an IMX636 (std::left, setw(5), "% ", name; sorted by name).
SAVED = """\
0    % bias_diff
-10  % bias_diff_off
25   % bias_diff_on
0    % bias_fo
0x14 % bias_hpf
0    % bias_refr
"""


def test_reads_what_metavision_writes_with_its_header(tmp_path):
    path = tmp_path / "evk4.bias"
    path.write_text("% camera_integrator_name Prophesee\n% date 2024-05-01 10:00:00\n% end\n" + SAVED)
    bias = load_bias_file(path)
    assert bias.values() == {"bias_diff": 0, "bias_diff_off": -10, "bias_diff_on": 25, "bias_fo": 0,
                             "bias_hpf": 20, "bias_refr": 0}
    assert bias.line_of("bias_diff") == 4 and bias.line_of("bias_refr") == 9 and bias.path == path


def test_format_is_the_save_to_file_layout_and_round_trips():
    values = {"bias_hpf": 20, "bias_diff_off": -10, "bias_fo": 0}
    text = format_bias_file(values)
    assert text == "-10  % bias_diff_off\n0    % bias_fo\n20   % bias_hpf\n"
    assert parse_bias_text(text).values() == values
    assert parse_bias_text("7 % bias_fo\r\n\r\n\n").values() == {"bias_fo": 7}  # CRLF, trailing blank lines


@pytest.mark.parametrize(("text", "match"), [
    ("0 % bias_diff\n12 bias_fo\n", r"f.bias:2: expected '<value> % <bias_name>', got '12 bias_fo'"),
    ("0 % bias_diff\n1.5 % bias_fo\n", r"f.bias:2: bias value '1.5' is not an integer"),
    ("0 % bias_diff\n\n3 % bias_fo\n", r"f.bias:3: bias line after the empty line 2"),
    ("3 % bias_fo\n4 % bias_fo\n", r"f.bias:2: bias_fo = 4 but line 1 set it to 3"),
    ("% a header\n0 % bias_pr\n", r"f.bias:2: unknown bias 'bias_pr' for the IMX636 \(it has: bias_diff, "),
    ("0 % bias_diff\n200 % bias_diff_on\n", r"f.bias:2: bias_diff_on = 200 is outside the IMX636's allowed "
                                            r"range \[-85, 140\]"),
    ("0 % bias_diff\n% a late comment\n", r"f.bias:2: expected '<value> % <bias_name>'"),
])
def test_errors_name_file_line_and_problem(tmp_path, text, match):
    path = tmp_path / "f.bias"
    path.write_text(text)
    with pytest.raises(BiasFileError, match=match):
        load_bias_file(path)


def test_without_a_sensor_any_name_and_value_pass():
    bias = parse_bias_text("1800 % bias_pr\n", "gen3.bias")
    assert bias.values() == {"bias_pr": 1800}
    with pytest.raises(BiasFileError, match="gen3.bias:1: unknown bias"):
        parse_bias_text("1800 % bias_pr\n", "gen3.bias", ranges=IMX636_BIAS_RANGES, sensor="IMX636")


def test_file_errors(tmp_path):
    with pytest.raises(BiasFileError, match="no such bias file"):
        load_bias_file(tmp_path / "missing.bias")
    other = tmp_path / "biases.txt"
    other.write_text(SAVED)
    with pytest.raises(BiasFileError, match=r"biases.txt: a Metavision bias file must end in .bias"):
        load_bias_file(other)
    empty = tmp_path / "empty.bias"
    empty.write_text("")
    assert load_bias_file(empty).values() == {}
