"""One opener for every event file, deciding by the header, never guessing (issue 14): RAW EVT
3.0/2.0/2.1, Prophesee DAT, jAER AEDAT 2.0, DSEC HDF5 each reach their reader; a file with no
recognisable header is refused with one clear line unless the user states format and geometry;
`rpea events info/convert` and the builder's session reader go through it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dataset.cli import main as rpea_main
from dataset.events import DsecWriter
from rig.evt import EVENT_DTYPE, TRIGGER_DTYPE, encode
from rig.evt.aedat import write_aedat2
from rig.evt.dat import write_dat
from rig.evt.errors import EventFileError
from rig.evt.evt2 import encode as encode_evt2
from rig.evt.evt21 import encode as encode_evt21
from rig.evt.files import detect_format, open_events, read_events


def _events(n: int = 300, w: int = 64, h: int = 48, t0: int = 1_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = t0 + np.sort(rng.integers(0, 50_000, n))
    ev["x"] = rng.integers(0, w, n)
    ev["y"] = rng.integers(0, h, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _canon(ev: np.ndarray) -> np.ndarray:
    return np.sort(ev, order=["t", "y", "x", "p"])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ev, none = _events(), np.zeros(0, TRIGGER_DTYPE)
    out = {
        "EVT3": tmp_path / "a.raw", "EVT2": tmp_path / "b.raw", "EVT21": tmp_path / "c.raw",
        "DAT": tmp_path / "d.dat", "AEDAT2": tmp_path / "e.aedat", "DSEC": tmp_path / "f.h5",
    }
    out["EVT3"].write_bytes(encode(ev, none, 64, 48))
    out["EVT2"].write_bytes(encode_evt2(ev, none, 64, 48))
    out["EVT21"].write_bytes(encode_evt21(ev, none, 64, 48))
    write_dat(out["DAT"], ev, 64, 48)
    write_aedat2(out["AEDAT2"], ev[(ev["x"] < 128) & (ev["y"] < 128)], chip="DVS128")
    with DsecWriter(out["DSEC"], attrs={"width": 64, "height": 48}) as w:
        w.append(ev)
    return out


def test_each_format_reaches_its_reader_by_its_header(files: dict[str, Path]) -> None:
    ev = _events()
    for fmt, path in files.items():
        assert detect_format(path).format == fmt, path
        reader = open_events(path)
        assert reader.format == fmt
        got, _ = reader.read_all()
        np.testing.assert_array_equal(_canon(got), _canon(ev), err_msg=fmt)  # all fit a DVS128
        if fmt != "AEDAT2":
            assert (reader.width, reader.height) == (64, 48), fmt


def test_the_name_of_a_file_decides_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    """A .dat named .raw is still read as DAT; a RAW file named .dat is still RAW."""
    renamed = tmp_path / "really_dat.raw"
    renamed.write_bytes(files["DAT"].read_bytes())
    assert open_events(renamed).format == "DAT"
    raw_as_dat = tmp_path / "really_raw.dat"
    raw_as_dat.write_bytes(files["EVT3"].read_bytes())
    assert open_events(raw_as_dat).format == "EVT3"


@pytest.mark.parametrize(("content", "match"), [
    (b"", "empty file"),
    (b"hello, these are my notes\n" * 20, "no recognisable event-file header at byte 0"),
    (bytes(range(256)) * 8, "no recognisable event-file header at byte 0"),
    (b"% title my file\n% author me\n" + b"\x00" * 64, "names no event format"),
])
def test_unrecognisable_files_are_refused_with_one_clear_line(tmp_path: Path, content: bytes,
                                                              match: str) -> None:
    path = tmp_path / "x.raw"
    path.write_bytes(content)
    with pytest.raises(EventFileError, match=match) as err:
        open_events(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    res = CliRunner().invoke(rpea_main, ["events", "info", str(path)])
    assert res.exit_code != 0 and match in res.output and "Traceback" not in res.output


def test_an_hdf5_file_that_is_not_dsec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.raw"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.zeros(4))
    res = CliRunner().invoke(rpea_main, ["events", "info", str(path)])
    assert res.exit_code != 0 and "not the DSEC event layout" in res.output


def test_headerless_words_are_read_only_when_the_user_states_format_and_geometry(tmp_path: Path,
                                                                                 files: dict[str, Path]
                                                                                 ) -> None:
    data = files["EVT3"].read_bytes()
    body = data[data.index(b"% end\n") + len(b"% end\n"):]
    path = tmp_path / "dump.bin"
    path.write_bytes(body)
    with pytest.raises(EventFileError, match="no recognisable"):
        open_events(path)
    with pytest.raises(EventFileError, match="width"):
        open_events(path, evt_format="evt3")
    got, _ = read_events(path, evt_format="evt3", width=64, height=48)
    np.testing.assert_array_equal(got, _events())
    res = CliRunner().invoke(rpea_main, ["events", "info", str(path), "--format", "evt3", "--width", "64",
                                         "--height", "48"])
    assert res.exit_code == 0 and "events      300" in res.output, res.output


def test_a_stated_format_that_contradicts_the_header_is_an_error(files: dict[str, Path]) -> None:
    with pytest.raises(EventFileError, match="header says EVT3, not EVT2"):
        open_events(files["EVT3"], evt_format="evt2")
    with pytest.raises(EventFileError, match="header says DAT"):
        open_events(files["DAT"], evt_format="evt3")
    assert open_events(files["EVT3"], evt_format="EVT3").format == "EVT3"


def test_info_and_convert_take_every_format(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    for fmt, path in files.items():
        res = runner.invoke(rpea_main, ["events", "info", str(path), "--json"])
        assert res.exit_code == 0 and f'"format": "{fmt}"' in res.output, (fmt, res.output)
        out = tmp_path / f"{fmt}.h5"
        res = runner.invoke(rpea_main, ["events", "convert", str(path), str(out)])
        assert res.exit_code == 0, (fmt, res.output)
        got, _ = read_events(out)
        np.testing.assert_array_equal(_canon(got), _canon(_events()), err_msg=fmt)
        with h5py.File(out, "r") as f:
            assert "ms_to_idx" in f and "t_offset" in f


def test_a_session_reads_its_event_file_through_the_opener(files: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`SessionReader.decode_events` (calibration's session source) takes the header's format."""
    from rig.session import SessionReader

    reader = SessionReader.__new__(SessionReader)  # only the events path matters here
    for fmt in ("EVT3", "EVT21", "DAT"):
        monkeypatch.setattr(SessionReader, "events_path", property(lambda self, p=files[fmt]: p))
        got, _ = reader.decode_events()
        np.testing.assert_array_equal(_canon(got), _canon(_events()), err_msg=fmt)
