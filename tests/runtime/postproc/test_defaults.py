"""The C core's post-processing defaults are generated from PostprocessConfig, and current."""

from __future__ import annotations

from reclnet.config import C_DEFAULTS_HEADER, postprocess_defaults_c_header
from reclnet.paths import source_checkout


def test_committed_c_header_is_the_generated_one() -> None:
    header = source_checkout() / C_DEFAULTS_HEADER
    assert header.read_text() == postprocess_defaults_c_header(), (
        f"{C_DEFAULTS_HEADER} is stale: run `make c-defaults`"
    )
