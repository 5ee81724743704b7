"""`topos animate` speed and accuracy (issue 18): video fitting, CSV -> GLB, rendered MP4.

    python benchmarks/animate.py [--out runs/bench_animate] [--frames 300] [--size 512] [--json]

1. A synthetic 10 s portrait video (300 frames at 30 fps, 512², MPEG-4 'mp4v'): the template rendered by
   `topos animate --from keys.json -o synth.mp4` with known curves: jawOpen (speech-like, 0-0.8), eye
   blinks (every ~2 s), mouthSmile (slow), a slow head turn (yaw +-20 deg, pitch +-6 deg). The time of that
   render is reported too (the .mp4 output's speed).
2. The video fitted by `pipelines/track.FaceTracker` (the code `topos animate --from VIDEO` runs), frames
   decoded beforehand: frames per second of detection + fit (target >= 10), and the recovered curves
   against the truth: Pearson r and mean absolute error of jawOpen, eyeBlink (L/R mean), mouthSmile (L/R
   mean), yaw/pitch error in degrees (mean and max), frames without a face.
3. `topos animate --from synth.mp4 -o fit.glb` end to end (decode, fit, asset, GLB), wall seconds.
4. A 300-frame Live Link Face CSV -> GLB in a fresh process (imports included; target <= 5 s), with CPU
   seconds, as `benchmarks/export.py` measures it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

FPS = 30.0
FIT_TARGET_FPS = 10.0


def truth_curves(frames: int, fps: float = FPS) -> dict[str, np.ndarray]:
    """Known curves: ARKit weights and head yaw/pitch in degrees."""
    t = np.arange(frames) / fps
    rng = np.random.default_rng(0)
    syllables = np.clip(np.sin(2 * np.pi * 3.1 * t + 1.3 * np.sin(2 * np.pi * 0.7 * t)), 0, None)
    jaw = 0.8 * syllables * (0.55 + 0.45 * np.sin(2 * np.pi * 0.23 * t + 0.5) ** 2)
    blink = np.zeros(frames)
    for centre in np.arange(1.0, t[-1] + 1e-9, 2.1) + rng.uniform(-0.3, 0.3, len(np.arange(1.0, t[-1] + 1e-9, 2.1))):
        blink = np.maximum(blink, np.exp(-0.5 * ((t - centre) / 0.05) ** 2))
    smile = 0.35 + 0.35 * np.sin(2 * np.pi * 0.13 * t)
    return {"jawOpen": jaw, "eyeBlink": blink, "mouthSmile": smile,
            "yaw": 20.0 * np.sin(2 * np.pi * 0.1 * t), "pitch": 6.0 * np.sin(2 * np.pi * 0.17 * t + 1.0)}


def write_keys(path: Path, truth: dict, fps: float = FPS) -> Path:
    keys = [{"time": i / fps,
             "weights": {"jawOpen": float(truth["jawOpen"][i]), "eyeBlinkLeft": float(truth["eyeBlink"][i]),
                         "eyeBlinkRight": float(truth["eyeBlink"][i]), "mouthSmileLeft": float(truth["mouthSmile"][i]),
                         "mouthSmileRight": float(truth["mouthSmile"][i])},
             "rotations": {"head": [float(truth["yaw"][i]), float(truth["pitch"][i]), 0.0]}}
            for i in range(len(truth["yaw"]))]
    path.write_text(json.dumps({"fps": fps, "keyframes": keys}))
    return path


def compare(track, truth: dict) -> dict:
    curves = track.animation({}).weights
    got = {"jawOpen": curves["jawOpen"], "eyeBlink": 0.5 * (curves["eyeBlink_L"] + curves["eyeBlink_R"]),
           "mouthSmile": 0.5 * (curves["mouthSmile_L"] + curves["mouthSmile_R"])}
    out = {name: {"r": round(float(np.corrcoef(got[name], truth[name])[0, 1]), 4),
                  "mae": round(float(np.abs(got[name] - truth[name]).mean()), 4)} for name in got}
    for k, name in enumerate(("yaw", "pitch")):
        err = track.angles[:, k] - truth[name]
        out[f"{name}_deg"] = {"mean_abs": round(float(np.abs(err).mean()), 3), "max_abs": round(float(np.abs(err).max()), 3),
                              "bias": round(float(err.mean()), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_animate")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from export import time_animate, write_llf_csv

    from topos_cli import api
    from topos_cli.io.video import open_frames
    from topos_cli.pipelines.track import FaceTracker
    from topos_cli.template import load_template

    truth = truth_curves(args.frames)
    video = args.out / "synth.mp4"
    t0 = time.perf_counter()
    rendered = api.animate(None, video, write_keys(args.out / "keys.json", truth), size=args.size)
    result: dict = {"frames": args.frames, "size": args.size, "load_avg_1min": round(os.getloadavg()[0], 1),
                    "render_mp4": {"seconds": round(time.perf_counter() - t0, 2), "frames": rendered["frames"],
                                   "fps_rendered": round(rendered["frames"] / (time.perf_counter() - t0), 2)}}
    clip = open_frames(video)
    frames = list(clip.frames())
    from topos_cli.faces.detect import detect_faces

    detect_faces(frames[0])  # mediapipe's one-off graph start (~0.5 s) is not per-frame work
    track = FaceTracker(load_template())(frames, clip.fps)
    rec = track.record()
    result["fit"] = {"fps": rec["fit_fps"], "target_fps": FIT_TARGET_FPS, "seconds": rec["seconds"],
                     "no_face_frames": rec["no_face_frames"], "reprojection_px_median": rec["reprojection_px_median"],
                     "vs_truth": compare(track, truth)}
    t0 = time.perf_counter()
    api.animate(None, args.out / "fit.glb", video)
    result["video_to_glb_end_to_end_s"] = round(time.perf_counter() - t0, 2)
    csv = write_llf_csv(args.out / "take300.csv")
    api.template_lod()
    result["csv_300_frames_to_glb"] = time_animate(csv, args.out / "take300.glb")
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
