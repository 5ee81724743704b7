"""Rendering throughput: topos's GL renderer against a plain moderngl baseline, dataset mode, and the
differentiable torch rasterizer (forward, forward+backward).

    python benchmarks/render.py                 # ICT head if ../shared/data has it, else an icosphere
    python benchmarks/render.py --mesh head.obj --sizes 256 512 --repeat 10

Printed figures are medians over `--repeat` frames after a warm-up; ratios compare with the baseline measured in
the same run (same mesh, same size, same process), so machine load affects both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_BASE_VS = """
#version 330
uniform mat4 u_clip; uniform vec4 u_zrow;
in vec3 in_pos; in vec3 in_nrm;
out vec3 v_nrm; out float v_z;
void main() { v_nrm = in_nrm; v_z = dot(u_zrow, vec4(in_pos, 1.0)); gl_Position = u_clip * vec4(in_pos, 1.0); }
"""
_BASE_FS = """
#version 330
in vec3 v_nrm; in float v_z;
layout(location = 0) out vec4 o_col; layout(location = 1) out vec4 o_nrm; layout(location = 2) out float o_z;
void main() {
    vec3 n = normalize(v_nrm);
    o_col = vec4(vec3(0.1 + 0.8 * max(dot(n, normalize(vec3(0.3, 0.4, 1.0))), 0.0)), 1.0);
    o_nrm = vec4(n, 1.0); o_z = v_z;
}
"""


def load_head(path: str | None):
    """(verts, faces, uv, uv_faces, name) of the benchmark mesh."""
    from topos_cli.template import triangulate_polys

    if path:
        from topos_cli.io.mesh import load_mesh

        m = load_mesh(path)
        return m.verts, m.faces, m.uv, m.uv_faces, Path(path).name
    npz = REPO.parent / "shared" / "data" / "ict_face_model_light.npz"
    if npz.is_file():
        d = np.load(npz)
        faces, _ = triangulate_polys(d["faces"].astype(np.int64))
        uvf, _ = triangulate_polys(d["faces_uv"].astype(np.int64))
        return d["neutral"], faces, d["uv"], uvf, "ICT FaceKit neutral (all parts)"
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=5, radius=10.0)
    v = np.asarray(s.vertices, np.float32)
    uv = 0.5 + 0.5 * v[:, :2] / 10
    return v, np.asarray(s.faces), uv, np.asarray(s.faces), "icosphere (20k faces)"


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: programs, buffers, caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gl_baseline(verts, faces, camera):
    """A plain moderngl frame: one MRT draw (colour, normal, depth, mask) + readback of the three targets."""
    from topos_cli.render.raster_gl import _vertex_normals, gl_context

    ctx = gl_context()
    prog = ctx.program(vertex_shader=_BASE_VS, fragment_shader=_BASE_FS)
    w, h = camera.width, camera.height
    targets = [ctx.texture((w, h), 4, dtype="f1"), ctx.texture((w, h), 4, dtype="f2"), ctx.texture((w, h), 1, dtype="f4")]
    fbo = ctx.framebuffer(color_attachments=targets, depth_attachment=ctx.depth_renderbuffer((w, h)))
    normals = _vertex_normals(np.asarray(verts, np.float32), faces)
    vbo = ctx.buffer(np.concatenate([verts, normals], 1).astype(np.float32).tobytes())
    ibo = ctx.buffer(np.asarray(faces, np.int32).tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "3f 3f", "in_pos", "in_nrm")], index_buffer=ibo)
    prog["u_clip"].write(np.ascontiguousarray(camera.clip_matrix().astype(np.float32).T).tobytes())
    prog["u_zrow"].value = tuple(float(x) for x in camera.world_to_camera()[2])

    def frame():  # a new shape per frame (dataset mode): normals and upload are part of the work
        normals = _vertex_normals(np.asarray(verts, np.float32), faces)
        vbo.write(np.concatenate([verts, normals], 1).astype(np.float32).tobytes())
        fbo.use()
        fbo.clear(0, 0, 0, 0, depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        vao.render()
        return [t.read() for t in targets]

    return frame


def torch_step(verts, faces, uv, uvf, camera, albedo, backward: bool):
    import torch

    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh

    renderer = Renderer("torch")
    rig = preset_rig("studio")
    tex = torch.tensor(albedo, dtype=torch.float32)

    def step():
        v = torch.tensor(verts, dtype=torch.float32, requires_grad=backward)
        material = Material(albedo_map=albedo)
        gb = renderer.gbuffer(RenderMesh(v, faces, uv=uv, uv_faces=uvf), camera, material)
        from topos_cli.render.shading import shade

        colour = shade(gb.position, gb.normal, gb.albedo, gb.roughness, gb.specular,
                       camera.center, rig)
        if backward:
            colour.mean().backward()
        return tex

    return step


def dataset_rate(verts, faces, size: int, count: int, per_mesh: int) -> float:
    """Images per second of `api.render` in dataset mode (random lighting, GGX, PNG writing included)."""
    from topos_cli import api
    from topos_cli.io.mesh import MeshData, save_mesh

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "meshes"
        rng = np.random.default_rng(0)
        for i in range(count):
            save_mesh(folder / f"m{i}.ply", MeshData(verts=verts + rng.normal(0, 0.05, verts.shape).astype(np.float32),
                                                     faces=faces))
        t = time.perf_counter()
        api.render(folder, Path(tmp) / "out", size=size, per_mesh=per_mesh, random_lighting=True, seed=0)
        return count * per_mesh / (time.perf_counter() - t)


def compare_backends(verts, faces, uv, uvf, albedo, size: int) -> str:
    """The torch rasterizer against the GL one on the benchmark mesh: mask IoU, depth, colour."""
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    mesh = RenderMesh(verts, faces, uv=uv, uv_faces=uvf)
    cam = framed_camera(verts, 25, 10, size)
    passes = ("color", "depth", "mask", "face_id")
    a = Renderer("gl").render(mesh, cam, Material(albedo_map=albedo), preset_rig("studio"), passes=passes)
    b = Renderer("torch").render(mesh, cam, Material(albedo_map=albedo), preset_rig("studio"), passes=passes)
    iou = (a["mask"] & b["mask"]).sum() / (a["mask"] | b["mask"]).sum()
    same = a["mask"] & (a["face_id"] == b["face_id"])
    extent = float(np.ptp(verts, 0).max())
    depth = np.abs(a["depth"] - b["depth"])[same].max() / extent
    colour = np.abs(a["color"][..., :3] - b["color"][..., :3])[a["mask"] & b["mask"]].max(-1) * 255
    return (f"torch vs GL at {size}px: mask IoU {iou:.6f}, same triangle on {same.sum() / a['mask'].sum():.4%} of "
            f"pixels, depth error there <= {depth:.1e} of the mesh size, colour |diff| (of 255) median "
            f"{np.median(colour):.2f}, 99th pct {np.percentile(colour, 99):.2f}, max {colour.max():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--dataset-meshes", type=int, default=4)
    parser.add_argument("--per-mesh", type=int, default=4)
    args = parser.parse_args()

    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.threads import render_threads
    from topos_cli.render.views import framed_camera

    verts, faces, uv, uvf, name = load_head(args.mesh)
    verts = np.asarray(verts, np.float32)
    print(f"mesh: {name}: {len(verts)} vertices, {len(faces)} triangles; render threads {render_threads()}")
    albedo = (np.random.default_rng(0).uniform(0.3, 0.9, (512, 512, 3)) * 255).astype(np.uint8)
    gl = Renderer("gl")
    mesh = RenderMesh(verts, faces, uv=uv, uv_faces=uvf)
    rig = preset_rig("studio")
    front = preset_rig("front")
    rows = []
    for size in args.sizes:
        cam = framed_camera(verts, 0, 0, size)
        base = timed(gl_baseline(verts, faces, cam), args.repeat)
        clay = timed(lambda c=cam: gl.render(mesh, c, Material(), front, "lambert", ("color",)), args.repeat)
        colour = timed(lambda c=cam: gl.render(mesh, c, Material(albedo_map=albedo), rig, "ggx", ("color",)),
                       args.repeat)
        passes = timed(lambda c=cam: gl.render(mesh, c, Material(albedo_map=albedo), rig, "ggx",
                                               ("color", "normal", "depth", "mask")), args.repeat)
        fwd = timed(torch_step(verts, faces, uv, uvf, cam, albedo, False), max(args.repeat // 2, 2))
        bwd = timed(torch_step(verts, faces, uv, uvf, cam, albedo, True), max(args.repeat // 2, 2))
        data = dataset_rate(verts, faces, size, args.dataset_meshes, args.per_mesh)
        rows.append((size, base, clay, colour, passes, fwd, bwd, data))
    print(f"{'size':>5} {'GL baseline':>12} {'topos clay':>16} {'topos color':>16} {'topos 4 passes':>16} "
          f"{'torch fwd':>14} {'torch fwd+bwd':>14} {'dataset':>12}")
    for size, base, clay, colour, passes, fwd, bwd, data in rows:
        print(f"{size:>5} {base * 1e3:>9.1f} ms {clay * 1e3:>8.1f} ms x{clay / base:<4.1f} "
              f"{colour * 1e3:>8.1f} ms x{colour / base:<4.1f} "
              f"{passes * 1e3:>8.1f} ms x{passes / base:<4.1f} {fwd * 1e3:>8.0f} ms {bwd * 1e3:>11.0f} ms "
              f"{data:>7.1f} img/s")
    print(compare_backends(verts, faces, uv, uvf, albedo, max(args.sizes)))
    print("fps = 1000 / ms; x = time relative to the plain GL baseline in this run. GL baseline: vertex normals, "
          "upload, one MRT draw of colour (Lambert in the shader), normal, depth, mask and their readback. clay: Renderer.render, colour "
          "only, untextured, one directional light, Lambert. color: Renderer.render with a "
          "512px albedo texture (trilinear), the studio rig (SH environment + 4-sample area light + fill, GGX in "
          "GLSL) and sRGB RGBA output; torch: the differentiable path (rasterize, interpolate, texture, GGX in "
          "torch), backward to vertices; dataset: api.render with random lighting, PNG writing and the manifest.")


if __name__ == "__main__":
    main()
