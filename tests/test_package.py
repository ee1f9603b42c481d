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
