"""``reclnet extract``: features equal the stream's, labels equal the rendered truth, resume, workers, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from reclnet.runtime.camera.persons import read_mot, write_mot  # noqa: E402
from reclnet.train import rendered_videos as rv  # noqa: E402
from reclnet.train.data import load_tracks, open_dataset  # noqa: E402
from reclnet.train.extract import ExtractError, main  # noqa: E402

D = 16  # tiny feature networks: the test is about equality, not quality


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """step.onnx (the rendered set's 5 actions) + features_{rgb,flow}.onnx with D = 16."""
    import torch

    from reclnet.config import RecLNetConfig
    from reclnet.export.cli import main as export_main
    from reclnet.export.features import export_features
    from reclnet.train.checkpoint import save_checkpoint
    from reclnet.train.model import RecLNet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    config = RecLNetConfig(
        num_actions=len(rv.DEFAULT_ACTIONS),
        modalities={"rgb": D, "flow": D},
        projection_size=8,
        memory_size=8,
    )
    ckpt = save_checkpoint(out / "model.pt", RecLNet(config).eval())
    assert export_main([str(ckpt), "--out", str(out)]) == 0
    for m in ("rgb", "flow"):
        # No INT8 copy: quicker, and "auto" then runs the float networks in both paths.
        export_features(out / f"features_{m}.onnx", stream=m, out_dim=D, int8=False)
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> rv.RenderedSet:
    return rv.render_set(
        tmp_path_factory.mktemp("rendered") / "set", videos=3, frames=(40, 48), seed=1
    )


def _args(rendered: rv.RenderedSet, model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--annotations",
        str(rendered.root),
        "--tracks",
        str(rendered.root / "tracks"),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def extracted(
    rendered: rv.RenderedSet, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("extracted") / "data.h5"
    assert main(_args(rendered, model_dir, out)) == 0
    assert not out.with_name("data.h5.parts").exists()
    return out


def test_features_equal_the_stream_pipelines(
    rendered: rv.RenderedSet, model_dir: Path, extracted: Path
) -> None:
    """Stream the same video with the same tracks (pipelined, as reclnet stream): same features."""
    from reclnet.runtime.backends import load_backend
    from reclnet.runtime.camera.features import FeatureNetwork, flow_for, open_feature_network
    from reclnet.runtime.camera.pipeline import MotPersons, StageTimer, StreamPipeline, TimedRunner
    from reclnet.runtime.camera.source import FileSource
    from reclnet.runtime.scorer import OnlineScorer

    video = rendered.videos[0]

    class Recorder:
        def __init__(self, net: FeatureNetwork) -> None:
            self.net, self.calls = net, []

        def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
            out = self.net(image, boxes)
            self.calls.append(out.copy())
            return out

    # As reclnet extract and reclnet stream open them: auto precision, auto backend.
    nets = {m: Recorder(open_feature_network(model_dir, m, threads=1)) for m in ("rgb", "flow")}
    seen: list[tuple[int, np.ndarray]] = []
    timer = StageTimer()
    with (
        load_backend("onnxruntime", model=model_dir / "step.onnx", threads=1) as runner,
        FileSource(rendered.root / "videos" / f"{video.name}.mp4") as source,
    ):
        tracks = read_mot(
            rendered.root / "tracks" / f"{video.name}.txt", frame_size=(source.width, source.height)
        )
        scorer = OnlineScorer(TimedRunner(runner, timer))
        with StreamPipeline(
            scorer,
            MotPersons(tracks),
            nets,
            timer=timer,
            class_names=rendered.classes,
            flow=flow_for(nets["flow"].net),  # as reclnet stream: the sidecar's DIS preset
            feature_scale=0.5,  # reclnet stream's default, and extract's
        ) as pipeline:
            pipeline.run(
                source,
                pipelined=True,
                on_frame=lambda out: seen.append((out.frame, out.tracks.ids.copy())),
            )
    with_tracks = [(f, ids) for f, ids in seen if len(ids)]
    assert len(with_tracks) == len(nets["rgb"].calls) == len(nets["flow"].calls) > 30
    with open_dataset(extracted) as ds:
        stored = {v.name: v for v in ds.videos()}[video.name]
    rows = {
        (int(f), t.track_id): (t, i) for t in stored.tracks for i, f in enumerate(t.frames.tolist())
    }
    compared = 0
    for call, (frame, ids) in enumerate(with_tracks):
        for k, tid in enumerate(ids.tolist()):
            track, i = rows.pop((frame, tid))
            for m in ("rgb", "flow"):
                np.testing.assert_allclose(
                    track.features[m][i], nets[m].calls[call][k], rtol=0, atol=1e-6
                )
            compared += 1
    assert not rows, f"extract has rows the stream never scored: {sorted(rows)[:5]}"
    assert compared == len(video.mot_frames)  # every MOT row was scored
    # Not a vacuous comparison: features vary over time and between modalities.
    t0 = stored.tracks[0]
    assert np.ptp(t0.features["flow"], axis=0).max() > 1e-3
    assert not np.allclose(t0.features["rgb"], t0.features["flow"])


def test_labels_equal_the_rendered_ground_truth(rendered: rv.RenderedSet, extracted: Path) -> None:
    tracks, info = load_tracks(extracted)
    assert info.class_names == rendered.classes
    by_key = {(t.video, t.track_id): t for t in tracks}
    with open_dataset(extracted) as ds:
        assert [v.name for v in ds.videos()] == [v.name for v in rendered.videos]
        assert [v.split for v in ds.videos()] == [v.split for v in rendered.videos]
        assert [v.num_frames for v in ds.videos()] == [v.num_frames for v in rendered.videos]
    positives = 0
    for video in rendered.videos:
        for tid in np.unique(video.mot_ids):
            rows = video.mot_ids == tid
            track = by_key[(video.name, int(tid))]
            np.testing.assert_array_equal(track.frames, video.mot_frames[rows])
            np.testing.assert_array_equal(track.labels, video.mot_labels[rows])
            positives += int((track.labels < len(rendered.classes)).sum())
    assert positives > 20  # some action frames, not only background


def test_one_and_two_workers_write_the_same_file(
    rendered: rv.RenderedSet, model_dir: Path, extracted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "two.h5"
    assert main(_args(rendered, model_dir, out, "--workers", "2")) == 0
    assert out.read_bytes() == extracted.read_bytes()


def test_resume_after_an_interruption_gives_the_same_file(
    rendered: rv.RenderedSet,
    model_dir: Path,
    extracted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "resumed.h5"
    monkeypatch.setenv("RECLNET_TEST_INTERRUPT_AFTER_VIDEO", "1")
    with pytest.raises(RuntimeError, match="interrupted after 1 videos"):
        main(_args(rendered, model_dir, out))
    parts = tmp_path / "resumed.h5.parts"
    assert not out.exists()
    assert len(list(parts.glob("*.h5"))) == 1 and not list(parts.glob("*.partial"))
    # Other settings must not resume these parts.
    monkeypatch.delenv("RECLNET_TEST_INTERRUPT_AFTER_VIDEO")
    with pytest.raises(ExtractError, match="other settings"):
        main(_args(rendered, model_dir, out, "--float16"))
    capsys.readouterr()
    assert main(_args(rendered, model_dir, out)) == 0
    assert "(2 extracted, 1 resumed)" in capsys.readouterr().out
    assert out.read_bytes() == extracted.read_bytes()
    assert not parts.exists()


def test_tube_file_subset_and_float16(
    rendered: rv.RenderedSet, model_dir: Path, extracted: Path, tmp_path: Path
) -> None:
    """A tube JSON Lines file, one video of it (--subset), float16: the float32 features cast."""
    video = rendered.videos[1]
    out = tmp_path / "one.h5"
    argv = [
        str(rendered.root / "videos" / f"{video.name}.mp4"),
        "--annotations",
        str(rendered.root / "tubes.jsonl"),
        "--classes",
        ",".join(rendered.classes),
        "--split",
        "val",
        "--subset",
        "--tracks",
        str(rendered.root / "tracks"),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--float16",
        "--quiet",
    ]
    assert main(argv) == 0
    with open_dataset(out) as ds, open_dataset(extracted) as ref:
        (got,) = list(ds.videos())
        want = {v.name: v for v in ref.videos()}[video.name]
        assert got.split == "val" and ds.class_names == rendered.classes
        assert len(got.tubes) == len(want.tubes) and len(got.tracks) == len(want.tracks)
        for a, b in zip(got.tracks, want.tracks, strict=True):
            for m in ("rgb", "flow"):
                assert a.features[m].dtype == np.float16
                np.testing.assert_array_equal(a.features[m], b.features[m].astype(np.float16))


def test_bad_input_names_the_file(
    rendered: rv.RenderedSet, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from reclnet.cli import main as reclnet_main

    videos = rendered.root / "videos"
    # A video without annotation.
    stray = tmp_path / "stray_video.mp4"
    shutil.copy(videos / f"{rendered.videos[0].name}.mp4", stray)
    with pytest.raises(ExtractError, match=r"stray_video\.mp4: no annotation"):
        main([str(stray), *_args(rendered, model_dir, tmp_path / "a.h5")])
    # Annotations naming a video that is not given, and one whose file is missing.
    first = videos / f"{rendered.videos[0].name}.mp4"
    missing = rendered.videos[1].name
    with pytest.raises(ExtractError, match=f"not among the inputs, e.g. '{missing}'"):
        main([str(first), *_args(rendered, model_dir, tmp_path / "b.h5")])
    broken = tmp_path / "broken_set"
    shutil.copytree(rendered.root, broken)
    (broken / "videos" / f"{missing}.mp4").unlink()
    with pytest.raises(
        ExtractError, match=rf"names video '{missing}' but .*{missing}\.mp4 does not exist"
    ):
        main(
            ["--annotations", str(broken / "manifest.json"), "--model", str(model_dir)]
            + ["--out", str(tmp_path / "c.h5"), "--tracks", str(broken / "tracks")]
        )
    # A tracks file written for a bigger video (640x480 boxes on a 320x240 video).
    tracks = tmp_path / "tracks"
    shutil.copytree(rendered.root / "tracks", tracks)
    name = rendered.videos[2].name
    mot = read_mot(tracks / f"{name}.txt")
    write_mot(tracks / f"{name}.txt", mot.frames, mot.ids, mot.boxes * 2.0 + 330.0)
    argv = ["--annotations", str(rendered.root), "--model", str(model_dir)]
    argv += ["--out", str(tmp_path / "d.h5"), "--tracks", str(tracks)]
    with pytest.raises(
        ExtractError, match=rf"tracks file .*{name}\.txt does not fit video .*320x240"
    ):
        main(argv)
    # Through the `reclnet` command: one line on stderr, exit status 1, the file named.
    capsys.readouterr()
    assert reclnet_main(["extract", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{name}.txt" in err
    # A tracks file with frames past the video's end.
    write_mot(tracks / f"{name}.txt", mot.frames + 1000, mot.ids, mot.boxes)
    with pytest.raises(ExtractError, match=rf"{name}\.txt has rows for frame \d+ but video"):
        main(argv)
    assert not any(tmp_path.glob("*.h5"))
    assert json.loads((rendered.root / "manifest.json").read_text())["videos"]


def test_feature_backend_problems_are_one_line_before_any_work(
    rendered: rv.RenderedSet, model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import sys

    out = tmp_path / "data.h5"
    with pytest.raises(SystemExit) as exc:
        main(_args(rendered, model_dir, out, "--feature-backend", "onnxruntime",
                   "--feature-precision", "bf16"))  # fmt: skip
    assert exc.value.code == 2
    assert "bf16 feature networks run on OpenVINO" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    with pytest.raises(ExtractError, match=r"pip install 'reclnet\[openvino\]'"):
        main(_args(rendered, model_dir, out, "--feature-backend", "openvino"))
    assert not out.exists() and not out.with_name("data.h5.parts").exists()
