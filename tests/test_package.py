"""The package layout: import names map to the top-level folders."""

from pathlib import Path

import reclnet
import reclnet.export
import reclnet.runtime
import reclnet.train

ROOT = Path(__file__).resolve().parents[1]


def test_import_names_map_to_top_level_folders() -> None:
    for module, folder in [
        (reclnet.train, "train"),
        (reclnet.export, "export"),
        (reclnet.runtime, "runtime"),
    ]:
        assert Path(module.__file__).resolve().parent == ROOT / folder


def test_cli_lists_commands(capsys) -> None:
    from reclnet.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "export", "eval", "stream", "bench", "demo"):
        assert name in out
    assert main(["no-such-command"]) == 2


def test_every_source_folder_is_a_package() -> None:
    # setup.py ships only folders with an __init__.py: a folder without one works in the
    # editable checkout (namespace package) but is silently missing from the wheel.
    missing = []
    for folder in ("reclnet", "train", "export", "runtime", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts and not (path.parent / "__init__.py").is_file():
                missing.append(str(path.parent.relative_to(ROOT)))
    assert sorted(set(missing)) == []


def test_data_folder_comes_from_flag_then_environment_then_checkout(tmp_path, monkeypatch) -> None:
    from reclnet import paths

    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    assert paths.source_checkout() == ROOT
    assert paths.data_dir() == ROOT.parent / "shared" / "data"
    assert paths.vtest_video() == ROOT.parent / "shared" / "data" / "video" / "vtest.avi"
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "env"))
    assert paths.data_dir() == tmp_path / "env"
    assert paths.data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert paths.vtest_video(tmp_path) == tmp_path / "video" / "vtest.avi"
    # An empty variable counts as unset.
    monkeypatch.setenv(paths.ENV_VAR, "")
    assert paths.data_dir() == ROOT.parent / "shared" / "data"
