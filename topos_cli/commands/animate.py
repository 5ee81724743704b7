"""`topos animate` as a function: a facial animation baked onto a head (glTF / USD) or rendered (MP4).

Sources: a Live Link Face CSV or keyframe JSON (`io/animation.py`), or a portrait video / folder of frames
fitted frame by frame (`pipelines/track.py`). Outputs: glTF animation channels on morph weights and joints,
USD time samples, or a rendered talking-head `.mp4` (`pipelines/talking_head.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError

VIDEO_OUT = ".mp4"
DEFAULT_SIZE = 512  # pixels per side of a rendered talking-head video
MIN_VIDEO_FPS = 15.0  # a source sampled coarser than this (sparse keyframes) is rendered at DEFAULT_FPS


def animate(head: str | Path | None, out: str | Path, source: str | Path, template: str | Path | None = None,
            texture: str | Path | None = None, rig: str = "arkit", units: str = "m", names: str = "arkit",
            fps: float | None = None, size: int = DEFAULT_SIZE, smooth: float | None = None,
            identity_frames: int | None = None) -> dict:
    """Bake an animation onto a head (`topos animate`).

    Args:
        head: a mesh in template topology, or None for the template's rest head.
        out: .glb/.gltf, .usd/.usda/.usdc/.usdz, or .mp4 (a rendered talking-head video).
        source: Live Link Face .csv, keyframe .json, a portrait video (.mp4, .mov, ...) or a folder of frames.
        texture, rig, units, names: as `export`.
        fps: frame rate of timecodes / frame-numbered keys / a frame folder (default: the source's).
        size: side in pixels of an .mp4.
        smooth: temporal Gaussian sigma in seconds for a fitted video (default track.SMOOTH_SECONDS; 0: off).
        identity_frames: first face frames a video's identity is fitted on (default 3; 0: the head as is).

    Returns:
        export's record plus "source" ("capture" or "video"), "tracking" (a video's fit report) and, for
        .mp4, "video" ({"frames", "fps", "size"}).
    """
    from topos_cli.commands.export import GLTF_SUFFIXES, USD_SUFFIXES, export
    from topos_cli.io.video import is_video_source

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in GLTF_SUFFIXES + USD_SUFFIXES + (VIDEO_OUT,):
        raise UsageError(f"{out}: animations are written as .glb/.gltf, .usd/.usda/.usdz or a rendered .mp4")
    if size < 16:
        raise UsageError(f"--size {size} is too small for a video; give at least 16 pixels")
    tracking, anim = None, source  # a capture file is read by `export` (or below, for a video out)
    if is_video_source(source):
        anim, tracking = _track_video(head, source, template, fps, smooth, identity_frames)
    elif suffix == VIDEO_OUT:
        from topos_cli.io.animation import read_animation

        anim = read_animation(source, fps)
    if suffix == VIDEO_OUT:
        result = _render_video(head, out, anim, Path(source).stem, template, texture, rig, names, size)
    else:
        result = export(head, out, template=template, texture=texture, rig=rig, units=units, names=names,
                        animation=anim, fps=fps)
    return {**result, "source": "video" if tracking is not None else "capture", "tracking": tracking}


def _track_video(head, source, template, fps, smooth, identity_frames):
    """(FaceAnimation, report) of a video or frame folder fitted with the head as its base."""
    from topos_cli.commands.export import _head_verts
    from topos_cli.io.video import open_frames
    from topos_cli.pipelines.head_asset import arkit_map
    from topos_cli.pipelines.track import FaceTracker, TrackOptions
    from topos_cli.template import load_template

    clip = open_frames(source, fps)
    tpl = load_template(template)
    defaults = TrackOptions()
    options = TrackOptions(smooth_s=defaults.smooth_s if smooth is None else float(smooth),
                           identity_frames=defaults.identity_frames if identity_frames is None else int(identity_frames))
    if options.smooth_s < 0 or options.identity_frames < 0:
        raise UsageError("--smooth and --identity-frames must be >= 0")
    track = FaceTracker(tpl, _head_verts(tpl, head), options)(clip.frames(), clip.fps)
    if (~track.found).any():
        from topos_cli.utils.log import console

        console.print(f"[yellow]warning:[/] {track.warnings[0]}")
    return track.animation(arkit_map(tpl, required=False)), {**track.record(), "fps": clip.fps}


def _render_video(head, out: Path, anim, name: str, template, texture, rig: str, names: str, size: int) -> dict:
    """Render the animated head to `out` (.mp4) at the source's rate (DEFAULT_FPS for sparse keyframes)."""
    from topos_cli.commands.export import _head_verts, asset_animation
    from topos_cli.io.video import DEFAULT_FPS, VideoWriter
    from topos_cli.pipelines.head_asset import build_head_asset, texture_maps
    from topos_cli.pipelines.talking_head import TalkingHead
    from topos_cli.template import load_template

    tpl = load_template(template)
    verts = _head_verts(tpl, head)
    asset, info = build_head_asset(tpl, verts, names=names, rig=rig, name=Path(head).stem if head else tpl.name)
    maps, paths = texture_maps(tpl, texture)
    times = np.asarray(anim.times, np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / DEFAULT_FPS
    rate = 1.0 / step if 1.0 / step >= MIN_VIDEO_FPS else DEFAULT_FPS
    frames = resample(asset_animation(asset, tpl, anim, names, name), rate)
    scene = TalkingHead.from_asset(asset, maps)
    with VideoWriter(out, rate) as writer:
        for picture in scene.frames(frames, size=size):
            writer.write(picture)
    return {"out": str(out.resolve()), "format": "mp4", **info, "units": "cm", "textures": paths,
            "frames": writer.frames, "video": {"frames": writer.frames, "fps": round(rate, 3), "size": size}}


def resample(anim, rate: float):
    """The Animation sampled every 1/rate s from its first to its last time: weights linearly, rotations by
    normalised linear interpolation of the quaternions (signs aligned; close to slerp at these steps)."""
    from topos_cli.io.gltf import Animation

    times = np.asarray(anim.times, np.float64)
    grid = np.arange(int(np.floor((times[-1] - times[0]) * rate + 1e-3)) + 1) / rate + times[0]  # float32 times
    weights = None
    if anim.weights is not None:
        weights = np.stack([np.interp(grid, times, anim.weights[:, k]) for k in range(anim.weights.shape[1])], 1)
    rotations = {}
    for joint, quats in anim.rotations.items():
        q = np.asarray(quats, np.float64).copy()
        for t in range(1, len(q)):  # take the nearer of q and -q so interpolation follows the short arc
            if q[t] @ q[t - 1] < 0:
                q[t] = -q[t]
        lerp = np.stack([np.interp(grid, times, q[:, c]) for c in range(4)], 1)
        rotations[joint] = lerp / np.linalg.norm(lerp, axis=1, keepdims=True)
    return Animation(grid.astype(np.float32), None if weights is None else weights.astype(np.float32), rotations,
                     name=anim.name)


__all__ = ["animate", "resample"]
