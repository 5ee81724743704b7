"""Render jobs: single pictures, turntables, contact sheets and render datasets (file in, files out).

Called by `commands/render.py` (`api.render`); the math lives in `topos_cli/render/`, file formats in `io/`, the
batch bookkeeping (shards, resume, manifest, meta, failures) in `io/batch.py`, the texture pool in
`texture_pool.py`.

Dataset layout written by `render_dataset` (STYLE.md 3.4):

    OUT/manifest.jsonl        one record per image: id, parent, mesh, image, passes, camera, lighting, texture
    OUT/meta.json             provenance (seed, argv, template hash, pass encodings)
    OUT/items/<mesh id>/<image id>[_<pass>].png
    OUT/textures/texNNN_{albedo,roughness,specular,normal}.png   the random-texture pool (--random-textures)

Pass encodings: color/albedo RGBA 8-bit sRGB (alpha = coverage); normal 16-bit RGB (n + 1) / 2; depth 16-bit
camera z in units of 0.01 cm (0 = background); mask 8-bit; uv 16-bit RGB (u, v, coverage); region 8-bit
label + 1 (0 = background; names in the record); `<image id>_ids.npz` holds face_id (H, W) int32 (-1 =
background) and, for the visibility pass, visible (V,) bool, vertex_pixels (V, 2) and vertex_depth (V,).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from topos_cli.errors import MeshError, TemplateMismatch, ToposError, UsageError
from topos_cli.io.batch import Outcome
from topos_cli.io.manifest import BatchResult

DEPTH_SCALE_CM = 0.01
DATA_SUFFIXES = {"color": "", "albedo": "_albedo", "normal": "_normal", "depth": "_depth", "mask": "_mask",
                 "uv": "_uv", "region": "_region"}


# ----------------------------------------------------------------------------- inputs

class MeshSource:
    """Loads meshes into `RenderMesh`es; borrows template UVs/regions for meshes in template topology."""

    def __init__(self, template=None):
        self._template_arg = template
        self._template = None
        self._template_error = None

    @property
    def template(self):
        """The template, loaded on first use (UsageError if it cannot be loaded)."""
        if self._template is None:
            from topos_cli.template import load_template

            self._template = load_template(self._template_arg)
        return self._template

    def try_template(self):
        try:
            return self.template
        except ToposError:
            return None

    def load(self, record: dict):
        """(RenderMesh, MeshData-or-None, template-or-None) for a record with "mesh" or "verts"."""
        from topos_cli.render.renderer import RenderMesh

        if "verts" in record:  # the template's rest mesh
            tpl = self.template
            return RenderMesh(tpl.verts, tpl.faces, uv=tpl.uv, uv_faces=tpl.uv_faces,
                              face_labels=_face_labels(tpl)), None, tpl
        from topos_cli.io.mesh import load_mesh

        mesh = load_mesh(record["mesh"])
        if np.ptp(mesh.verts, axis=0).max(initial=0.0) <= 0:  # nothing to frame: the camera fit divides by it
            raise MeshError(f"{record['mesh']}: all the mesh's points are in one spot; nothing to render")
        tpl = self._matching_template(mesh)
        uv, uvf = mesh.uv, mesh.uv_faces
        if uv is None and tpl is not None:
            uv, uvf = tpl.uv, tpl.uv_faces
        colors = None if mesh.colors is None else np.asarray(mesh.colors, np.float32)[:, :3] ** 2.2
        rmesh = RenderMesh(mesh.verts, mesh.faces, normals=mesh.normals, uv=uv, uv_faces=uvf, colors=colors,
                           face_labels=_face_labels(tpl) if tpl is not None else None)
        return rmesh, mesh, tpl

    def _matching_template(self, mesh):
        tpl = self.try_template()
        if tpl is not None and len(mesh.verts) == tpl.num_verts and np.array_equal(mesh.faces, tpl.faces):
            return tpl
        return None


def _face_labels(tpl) -> np.ndarray:
    labels, _ = tpl.vertex_labels()
    return labels[tpl.faces[:, 0]]


def resolve_items(input) -> list[dict]:
    """INPUT as records {"id", "mesh" | "verts"}: None (template), a mesh, a folder, a dataset folder, '-'."""
    from topos_cli.io.manifest import resolve_inputs

    if input is None or str(input) in ("", "template"):
        return [{"id": "template", "verts": True}]
    return resolve_inputs(input)


def resolve_lighting(spec: str):
    """A LightRig from a preset name, an equirectangular image file, or a JSON rig file."""
    from topos_cli.render.lights import LightRig, env_light_from_image, preset_rig, rig_from_dict

    path = Path(spec)
    if path.suffix.lower() == ".json":
        from topos_cli.io.fs import read_json

        return rig_from_dict(read_json(path, "lighting file"))
    if path.suffix:
        from topos_cli.io.image import read_image

        img = read_image(path)
        img = img[..., None].repeat(3, 2) if img.ndim == 2 else img
        return LightRig([env_light_from_image(img, path.name)], path.stem)
    return preset_rig(spec)


def resolve_cameras(camera_file, verts, size, views: int, per_mesh: int, rng_for) -> list[tuple]:
    """[(camera, params)] for one mesh: JSON cameras, an orbit of `views`, or `per_mesh` perturbed frontals."""
    from topos_cli.render import views as V

    if camera_file is not None:
        from topos_cli.io.fs import read_json

        path = Path(camera_file)
        data = read_json(path, "camera file")
        return [(cam, {"source": path.name}) for cam in V.cameras_from_json(data, size)]
    if views > 1:
        return [(cam, {"azimuth": i * 360.0 / views, "elevation": 10.0})
                for i, cam in enumerate(V.orbit(verts, views, elevation=10.0, size=size))]
    if per_mesh > 0 and rng_for is not None:
        return [V.perturbed_frontal(verts, rng_for(k), size=size) for k in range(per_mesh)]
    return [(V.framed_camera(verts, 0.0, 0.0, size), {"azimuth": 0.0, "elevation": 0.0})]


# ----------------------------------------------------------------------------- writing passes

def write_passes(stem: Path, images: dict, passes) -> dict:
    """Write each pass next to `stem` (stem.png = color) and return {pass: path}."""
    from topos_cli.io.fs import atomic_path
    from topos_cli.io.image import write_png

    paths = {}
    for name in passes:
        if name in ("face_id", "visibility"):
            continue
        img = images[name]
        path = stem.parent / f"{stem.name}{DATA_SUFFIXES[name]}.png"
        if name in ("color", "albedo"):
            write_png(path, img)
        elif name == "normal":
            covered = np.abs(img).sum(-1, keepdims=True) > 0
            write_png(path, np.where(covered, (img + 1) / 2, 0), bits=16)
        elif name == "depth":
            write_png(path, np.clip(np.round(img / DEPTH_SCALE_CM), 0, 65535).astype(np.uint16), bits=16)
        elif name == "mask":
            write_png(path, img)
        elif name == "uv":
            cov = (images["mask"] if "mask" in images else np.ones(img.shape[:2], bool)).astype(np.float32)
            write_png(path, np.concatenate([img, cov[..., None]], -1), bits=16)
        elif name == "region":
            write_png(path, np.clip(img + 1, 0, 255).astype(np.uint8))
        paths[name] = str(path.resolve())
    if "face_id" in passes or "visibility" in passes:
        path = stem.parent / f"{stem.name}_ids.npz"
        arrays = {}
        if "face_id" in images:
            arrays["face_id"] = images["face_id"].astype(np.int32)
        if "visibility" in images:
            arrays.update(visible=images["visibility"], vertex_pixels=images["vertex_pixels"],
                          vertex_depth=images["vertex_depth"])
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        paths["ids"] = str(path.resolve())
    return paths


def sheet(rows: list[list[np.ndarray]], background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Compose RGBA/RGB float tiles into one RGB image (rows of equal-size tiles), over `background`."""
    def rgb(tile):
        tile = np.asarray(tile, np.float32)
        if tile.ndim == 2:
            tile = tile[..., None].repeat(3, 2)
        if tile.shape[2] == 4:
            return tile[..., :3] * tile[..., 3:] + np.asarray(background, np.float32) * (1 - tile[..., 3:])
        return tile[..., :3]

    width = max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    blank = np.tile(np.asarray(background, np.float32), (h, w, 1))
    return np.concatenate([np.concatenate([rgb(t) for t in r] + [blank] * (width - len(r)), 1) for r in rows], 0)


def pass_preview(name: str, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A viewable RGBA tile of any pass (normals as colours, depth as grey, regions as a palette)."""
    alpha = mask.astype(np.float32)[..., None]
    if name in ("color", "albedo"):
        return img
    if name == "normal":
        rgb = (img + 1) / 2
    elif name == "depth":
        z = img[mask]
        lo, hi = (z.min(), z.max()) if z.size else (0, 1)
        rgb = (1 - (img - lo) / max(hi - lo, 1e-6))[..., None].repeat(3, 2) * 0.8 + 0.1
    elif name == "uv":
        rgb = np.concatenate([img, np.zeros_like(img[..., :1])], -1)
    elif name in ("region", "face_id"):
        palette = np.random.default_rng(7).uniform(0.2, 1.0, (max(int(img.max()) + 2, 2), 3))
        rgb = palette[np.maximum(img, 0) % len(palette)]
    else:
        rgb = mask[..., None].repeat(3, 2).astype(np.float32)
    return np.concatenate([np.clip(rgb, 0, 1), alpha], -1)


# ----------------------------------------------------------------------------- jobs

@dataclass
class RenderOptions:
    """Options shared by every render job (see `api.render` for their meaning)."""

    size: int = 512
    backend: str = "gl"
    device: str = "cpu"
    passes: tuple = ("color",)
    lighting: str = "studio"
    shading: str = "ggx"
    ssaa: int = 1
    normal_space: str = "world"
    texture: str | None = None
    fov: float = 20.0
    template: str | None = None
    random_texture: bool = False
    seed: int = 0
    normal_map: str | None = None
    parts: bool = True  # draw the template's eyes and mouth interior with heads in its topology (render/parts.py)


def make_options(passes="color", texture=None, template=None, normal_map=None, **kw) -> RenderOptions:
    """Validated `RenderOptions` (UsageError naming the bad option)."""
    from topos_cli.render.renderer import PASSES

    pass_list = tuple(p.strip() for p in passes.split(",")) if isinstance(passes, str) else tuple(passes)
    bad = [p for p in pass_list if p not in PASSES]
    if bad or not pass_list:
        raise UsageError(f"unknown pass(es) {bad}; choose from {', '.join(PASSES)}")
    opts = RenderOptions(passes=pass_list, texture=None if texture is None else str(texture),
                         template=None if template is None else str(template),
                         normal_map=None if normal_map is None else str(normal_map), **kw)
    if not 16 <= opts.size <= 4096:
        raise UsageError(f"--size must be in [16, 4096], got {opts.size}")
    if opts.shading not in ("ggx", "lambert"):
        raise UsageError(f"--shading must be ggx or lambert, got {opts.shading!r}")
    if opts.normal_space not in ("world", "camera"):
        raise UsageError(f"--normal-space must be world or camera, got {opts.normal_space!r}")
    return opts


def check_animation_output(out: Path) -> None:
    """UsageError unless `out` is a .gif, or an .mp4/.webm with imageio-ffmpeg installed (checked up front)."""
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4", ".webm"):
        raise UsageError(f"--turntable writes an animation: give -o with .gif or .mp4, not {out.name}")
    if suffix != ".gif":
        import importlib.util

        if importlib.util.find_spec("imageio_ffmpeg") is None:
            raise UsageError(f"writing {suffix} needs ffmpeg: pip install imageio-ffmpeg, or write a .gif")


def dataset_meta(meta: dict) -> dict:
    """meta.json of a render dataset: the run's provenance plus the pass encodings."""
    return {**meta, "depth_scale_cm": DEPTH_SCALE_CM, "encodings": __doc__.split("Pass encodings: ")[1].strip()}


def _material(opts: RenderOptions, mesh_data, cache: dict, tpl=None, synthesize: bool = False, mesh=None):
    """Material from --texture or the mesh's own texture (OBJ map_Kd); else, for meshes in template topology
    with `opts.random_texture` (or `synthesize`), a synthesized skin drawn from `opts.seed`; else clay."""
    from topos_cli.render.renderer import Material

    path = opts.texture or (mesh_data.texture if mesh_data is not None else None)
    if opts.random_texture and path is None and tpl is None:
        raise TemplateMismatch("--random-textures paints the template's UV space, and this mesh is not in template "
                               "topology (a .glb splits vertices at UV seams: use .obj/.ply, or topos retopo)")
    if path is None and tpl is not None and tpl.uv is not None and (opts.random_texture or synthesize):
        from topos_cli.render.textures import build_atlas
        from topos_cli.render.textures import synthesize as draw
        from topos_cli.utils.seeding import item_rng

        atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions,
                            tpl.landmarks if len(tpl.landmarks) == 68 else None, 1024)  # pictures for people
        smp = draw(atlas, item_rng(opts.seed, "texture"))
        return Material(albedo_map=smp.albedo, material_map=np.stack([smp.roughness, smp.specular], -1),
                        normal_map=smp.normal, roughness=1.0, specular=2.0), \
            {"synthesized": True, "seed": opts.seed, "params": smp.params}
    normal = _image8(opts.normal_map, cache) if opts.normal_map else None
    if (path is not None or normal is not None) and mesh is not None and mesh.uv is None:
        raise UsageError("this mesh has no texture coordinates, so --texture/--normal-map cannot be placed; "
                         "give a mesh with UVs (OBJ vt, GLB TEXCOORD_0) or one in template topology")
    if path is None:
        return Material(normal_map=normal), ({"normal_map": _abs(opts.normal_map)} if normal is not None else None)
    rec = {"albedo": _abs(path)} if normal is None else {"albedo": _abs(path), "normal_map": _abs(opts.normal_map)}
    return Material(albedo_map=_image8(path, cache), normal_map=normal), rec


def _image8(path, cache: dict) -> np.ndarray:
    """(H, W, 3) uint8 image read once per path."""
    key = str(path)
    if key not in cache:
        from topos_cli.io.image import read_image, to_uint8

        img = read_image(path)
        img = img[..., None].repeat(3, 2) if img.ndim == 2 else img[..., :3]
        cache[key] = to_uint8(img / 65535.0) if img.dtype == np.uint16 else to_uint8(img)
    return cache[key]


def _renderer(opts: RenderOptions):
    from topos_cli.render.parts import PartsRenderer
    from topos_cli.render.renderer import Renderer

    return PartsRenderer(opts.backend, opts.device, opts.template) if opts.parts else Renderer(opts.backend, opts.device)


def render_images(input, out: Path, opts: RenderOptions, camera_file=None, views: int = 1) -> list[dict]:
    """Render one mesh to `out` (.png): one image per camera (`out` or `<stem>_vNN.png`), passes beside it."""
    from topos_cli.render.views import framed_camera

    items = resolve_items(input)
    if len(items) != 1:
        raise UsageError(f"{input} holds {len(items)} meshes; give a folder for -o to render a dataset")
    source = MeshSource(_template_arg(opts))
    mesh, data, tpl = source.load(items[0])
    if "," in opts.lighting:
        return [_relight_strip(items[0], mesh, data, tpl, out, opts)]
    rig = resolve_lighting(opts.lighting)
    material, tex = _material(opts, data, {}, tpl, mesh=mesh)
    cams = resolve_cameras(camera_file, _np(mesh.verts), opts.size, views, 0, None) if (camera_file or views > 1) \
        else [(framed_camera(_np(mesh.verts), 0, 0, opts.size, opts.fov), {"azimuth": 0.0, "elevation": 0.0})]
    renderer = _renderer(opts)
    records = []
    for i, (cam, params) in enumerate(cams):
        images = renderer.render(mesh, cam, material, rig, opts.shading, _with_mask(opts.passes), opts.ssaa,
                                 opts.normal_space)
        stem = out.with_suffix("") if len(cams) == 1 else out.parent / f"{out.stem}_v{i:02d}"
        paths = write_passes(stem, images, opts.passes)
        records.append({"id": stem.name, "mesh": _abs(items[0].get("mesh")), "image": paths.get("color"),
                        "passes": paths, "camera": cam.to_dict(), "view": params, "lighting": opts.lighting,
                        "texture": tex})
    return records


def _relight_strip(item, mesh, data, tpl, out: Path, opts: RenderOptions) -> dict:
    """`--lighting a,b,c`: the same view under each lighting, side by side in one PNG (a relighting figure)."""
    from topos_cli.io.image import write_png
    from topos_cli.render.views import framed_camera

    names = [n.strip() for n in opts.lighting.split(",") if n.strip()]
    rigs = [resolve_lighting(n) for n in names]
    material, tex = _material(opts, data, {}, tpl, mesh=mesh)
    cam = framed_camera(_np(mesh.verts), 0, 0, opts.size, opts.fov)
    renderer = _renderer(opts)
    tiles = [renderer.render(mesh, cam, material, rig, opts.shading, ("color",), opts.ssaa)["color"] for rig in rigs]
    write_png(out, sheet([tiles]))
    return {"id": out.stem, "mesh": _abs(item.get("mesh")), "image": str(out.resolve()), "lighting": names,
            "camera": cam.to_dict(), "texture": tex}


def _template_arg(opts):
    return opts.template


def _with_mask(passes) -> tuple:
    return tuple(passes) if "mask" in passes else tuple(passes) + ("mask",)


def _abs(path) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _np(verts) -> np.ndarray:
    return np.asarray(verts, np.float64)


def render_turntable(input, out: Path, opts: RenderOptions, frames: int = 36, fps: float = 24.0,
                     elevation: float = 10.0) -> dict:
    """A turntable animation (.gif or .mp4) of one mesh, colour pass over a white background."""
    from topos_cli.io.image import write_animation
    from topos_cli.render.views import orbit
    from topos_cli.utils.log import progress

    items = resolve_items(input)
    if len(items) != 1:
        raise UsageError(f"{input} holds {len(items)} meshes; a turntable shows one mesh")
    mesh, data, tpl = MeshSource(_template_arg(opts)).load(items[0])
    rig = resolve_lighting(opts.lighting)
    material, tex = _material(opts, data, {}, tpl, mesh=mesh)
    renderer = _renderer(opts)
    tiles = []
    for cam in progress(orbit(_np(mesh.verts), frames, elevation, opts.size, opts.fov), description="turntable"):
        img = renderer.render(mesh, cam, material, rig, opts.shading, ("color",), opts.ssaa)["color"]
        tiles.append(sheet([[img]]))
    write_animation(out, tiles, fps)
    return {"id": out.stem, "mesh": _abs(items[0].get("mesh")), "image": str(out.resolve()), "frames": frames, "fps": fps,
            "lighting": opts.lighting, "texture": tex}


SHEET_LIGHTINGS = ("studio", "side", "rim", "sunset", "overcast")


def render_contact_sheet(input, out: Path, opts: RenderOptions, lightings=SHEET_LIGHTINGS) -> dict:
    """One PNG: geometry row (clay front/side, normals, depth, regions), texture row (albedo, textured views)
    and a relighting row (the same head under several lightings)."""
    from topos_cli.io.image import write_png
    from topos_cli.render.renderer import Material
    from topos_cli.render.views import framed_camera

    items = resolve_items(input)
    if len(items) != 1:
        raise UsageError(f"{input} holds {len(items)} meshes; a contact sheet shows one mesh")
    mesh, data, tpl = MeshSource(_template_arg(opts)).load(items[0])
    material, tex = _material(opts, data, {}, tpl, synthesize=True, mesh=mesh)
    renderer = _renderer(opts)
    verts = _np(mesh.verts)
    front, side = (framed_camera(verts, az, 5, opts.size, opts.fov) for az in (0.0, 60.0))
    clay = resolve_lighting("studio")
    geo = renderer.render(mesh, front, Material(), clay, opts.shading,
                          ("color", "normal", "depth", "mask", "region"), opts.ssaa)
    m = geo["mask"]
    rows = [[geo["color"], renderer.render(mesh, side, Material(), clay, opts.shading, ("color",), opts.ssaa)["color"],
             pass_preview("normal", geo["normal"], m), pass_preview("depth", geo["depth"], m),
             pass_preview("region", geo["region"], m)]]
    textured = renderer.render(mesh, front, material, clay, opts.shading, ("color", "albedo"), opts.ssaa)
    rows.append([textured["albedo"], textured["color"],
                 renderer.render(mesh, side, material, clay, opts.shading, ("color",), opts.ssaa)["color"]])
    rows.append([renderer.render(mesh, front, material, resolve_lighting(name), opts.shading, ("color",),
                                 opts.ssaa)["color"] for name in lightings])
    write_png(out, sheet(rows))
    return {"id": out.stem, "mesh": _abs(items[0].get("mesh")), "image": str(out.resolve()), "texture": tex,
            "rows": ["geometry: clay front, clay side, normal, depth, region",
                     "texture: albedo, lit front, lit side", "relit: " + ", ".join(lightings)]}


@dataclass
class DatasetJob:
    """What every mesh of a render dataset shares (see `render_dataset`)."""

    out: Path
    opts: RenderOptions
    source: MeshSource
    pool: object  # TexturePool or None
    fixed_rig: object
    views: int = 1
    per_mesh: int = 1
    camera_file: str | None = None
    seed: int = 0
    force: bool = False


def render_dataset(input, out: Path, opts: RenderOptions, views: int = 1, per_mesh: int = 1,
                   random_lighting: bool = False, random_textures: bool = False, texture_pool: int = 32,
                   camera_file=None, seed: int = 0, shard: str | None = None, force: bool = False,
                   texture_size: int = 512, meta: dict | None = None) -> BatchResult:
    """Render every mesh of INPUT into the dataset folder OUT (see module docstring); resumable, shardable.

    Every random draw (camera, light rig, pool texture) comes from (seed, image id), and textures are read
    back from their 8-bit files, so a resumed, sharded or uninterrupted run writes the same bytes."""
    from functools import partial

    from topos_cli.io.batch import BatchItem, run_batch

    out = Path(out)
    source = MeshSource(opts.template)
    items = [BatchItem(id=str(it["id"]), payload=it, failure={"mesh": str(it.get("mesh"))})
             for it in resolve_items(input)]
    from topos_cli.pipelines.texture_pool import TexturePool

    pool = TexturePool(source.template, out / "textures", texture_pool, seed, texture_size) if random_textures \
        else None
    job = DatasetJob(out, opts, source, pool, None if random_lighting else resolve_lighting(opts.lighting), views,
                     per_mesh, camera_file, seed, force)
    return run_batch(items, partial(_render_mesh, job, _renderer(opts), {}), out, shard=shard, force=force,
                     meta=dataset_meta(meta or {}), description="render")


def _render_mesh(job: DatasetJob, renderer, cache: dict, item) -> Outcome:
    """Render (or, where its files exist, skip) every image of one mesh; their records."""
    from topos_cli.utils.seeding import item_rng

    mesh_id = item.id
    mesh, data, tpl = job.source.load(item.payload)
    if job.pool is not None and tpl is None:
        raise TemplateMismatch(f"{item.payload.get('mesh')} is not in template topology; --random-textures "
                               f"paints the template's UV space (retopologise it first: topos retopo)")
    cams = resolve_cameras(job.camera_file, _np(mesh.verts), job.opts.size, job.views, job.per_mesh,
                           lambda k: item_rng(job.seed, f"{mesh_id}-r{k:02d}:camera"))
    base = _material(replace(job.opts, random_texture=False), data, cache, mesh=mesh)  # the pool draws instead
    outcome = Outcome([])
    for k, (cam, params) in enumerate(cams):
        record, skipped = _dataset_image(job, renderer, item.payload, mesh, tpl, base, f"{mesh_id}-r{k:02d}", cam,
                                         params)
        outcome.records.append(record)
        outcome.skipped += int(skipped)
    return outcome


def _dataset_image(job: DatasetJob, renderer, item, mesh, tpl, base, image_id, cam, params) -> tuple[dict, bool]:
    """Render (or, when its files exist, skip) one dataset image; return its record and whether it was skipped.
    Random lighting and texture are drawn from (seed, image id) either way, so records do not depend on resume."""
    from topos_cli.io.manifest import split_for
    from topos_cli.render.lights import random_rig
    from topos_cli.utils.seeding import item_rng, item_seed

    opts = job.opts
    rng = item_rng(job.seed, image_id)
    rig = random_rig(rng) if job.fixed_rig is None else job.fixed_rig
    material, tex_rec = job.pool.get(int(rng.integers(job.pool.count))) if job.pool is not None else base
    stem = job.out / "items" / str(item["id"]) / image_id
    paths = _existing_paths(stem, opts.passes)
    skipped = not job.force and all(Path(p).is_file() for p in paths.values())
    if not skipped:
        images = renderer.render(mesh, cam, material, rig, opts.shading, _with_mask(opts.passes), opts.ssaa,
                                 opts.normal_space)
        paths = write_passes(stem, images, opts.passes)
    record = {key: val for key, val in item.items() if key not in ("verts", "root", "id")}
    record.update({"id": image_id, "parent": str(item["id"]), "image": paths.get("color"), "passes": paths,
                   "camera": cam.to_dict(), "view": params, "lighting": rig.to_dict(), "texture": tex_rec,
                   "seed": item_seed(job.seed, image_id), "split": item.get("split") or split_for(str(item["id"]))})
    if tpl is not None:
        record.update(template=tpl.name, template_hash=tpl.hash)
        if "region" in opts.passes:
            record["region_names"] = list(tpl.regions)
    return record, skipped


def _existing_paths(stem: Path, passes) -> dict:
    paths = {name: str((stem.parent / f"{stem.name}{DATA_SUFFIXES[name]}.png").resolve()) for name in passes
             if name in DATA_SUFFIXES}
    if "face_id" in passes or "visibility" in passes:
        paths["ids"] = str((stem.parent / f"{stem.name}_ids.npz").resolve())
    return paths
