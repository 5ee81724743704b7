"""The differentiable torch rasterizer against the EGL rasterizer (oracle), geometry and finite differences."""

import numpy as np
import pytest
import torch
import trimesh

from topos_cli.render import raster_torch as rt
from topos_cli.render.camera import look_at
from topos_cli.render.lights import DirectionalLight, LightRig
from topos_cli.render.renderer import Material, Renderer, RenderMesh, vertex_visibility
from topos_cli.render.views import framed_camera


@pytest.fixture(scope="module")
def blob():
    """A lumpy icosphere (radius ~10 cm, 1280 faces) with spherical UVs."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    verts = np.asarray(sphere.vertices, np.float32)
    verts = verts * (1 + 0.08 * np.sin(verts[:, :1] * 0.5) * np.cos(verts[:, 1:2] * 0.4))
    uv = np.stack([0.5 + 0.4 * verts[:, 0] / 12, 0.5 + 0.4 * verts[:, 1] / 12], 1).astype(np.float32)
    return verts.astype(np.float32), np.asarray(sphere.faces, np.int64), uv


@pytest.fixture(scope="module")
def gl():
    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no headless EGL context here (apt-get install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri)")
    return Renderer("gl")


def _gradient_texture(size=32):
    u = np.linspace(0, 1, size)
    return (np.stack([np.tile(u, (size, 1)), np.tile(u[:, None], (1, size)), 0.5 * np.ones((size, size))], -1)
            * 255).astype(np.uint8)


@pytest.mark.parametrize("azimuth", [0.0, 130.0])
def test_torch_matches_gl_mask_depth_and_colour(blob, gl, azimuth):
    verts, faces, uv = blob
    cam = framed_camera(verts, azimuth, 20.0, 96)
    mesh = RenderMesh(verts, faces, uv=uv, uv_faces=faces)
    rig = LightRig([DirectionalLight((0.3, 0.5, 1.0), intensity=0.9)])
    material = Material(albedo_map=_gradient_texture())  # magnified: bilinear on both sides
    passes = ("color", "depth", "mask", "face_id")
    a = gl.render(mesh, cam, material, rig, "lambert", passes)
    b = Renderer("torch").render(mesh, cam, material, rig, "lambert", passes)
    iou = (a["mask"] & b["mask"]).sum() / (a["mask"] | b["mask"]).sum()
    assert iou == 1.0
    same = a["mask"] & (a["face_id"] == b["face_id"])
    assert same.sum() > 0.99 * a["mask"].sum()  # only exact edge ties may pick the other triangle
    extent = np.ptp(verts, 0).max()
    assert np.abs(a["depth"] - b["depth"])[same].max() < 1e-4 * extent
    diff = np.abs(a["color"][..., :3] - b["color"][..., :3])[a["mask"]].max(-1) * 255
    # llvmpipe picks mip levels per 2x2 quad from finite differences, we from analytic derivatives: a few
    # grazing-angle pixels differ by a few levels of 255, the rest by well under one
    assert np.percentile(diff, 99) < 1.0 and diff.max() < 8.0
    plain = Renderer("torch").render(mesh, cam, Material(), rig, "ggx", ("color",))["color"]
    oracle = gl.render(mesh, cam, Material(), rig, "ggx", ("color",))["color"]
    assert np.abs(plain - oracle)[a["mask"]].max() < 1.0 / 255  # untextured: identical to round-off


def test_mask_and_depth_agree_with_the_camera(blob):
    verts, faces, _ = blob
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
    verts, faces = np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces)
    cam = look_at((0, 0, 60), fov=30, width=80)
    out = Renderer("torch").render(RenderMesh(verts, faces), cam, passes=("depth", "mask", "visibility"))
    pix, z = cam.project(verts)
    front = verts[:, 2] > 6.0  # well inside the silhouette (which is at z = 100 / 60)
    cols, rows = np.floor(pix[front]).astype(int).T
    assert out["mask"][rows, cols].all()  # every front vertex lands on a covered pixel
    assert abs(out["depth"][40, 40] - 50.0) < 0.05  # camera z of the sphere's nearest point (faceted)
    assert out["visibility"][front & (verts[:, 2] > 3)].all()
    assert not out["visibility"][verts[:, 2] < -1].any()  # the far side is occluded
    radius_px = np.sqrt(out["mask"].sum() / np.pi)
    expect = cam.fx * 10 / np.sqrt(60 ** 2 - 10 ** 2)  # silhouette of a sphere seen from 60 cm
    assert abs(radius_px - expect) < 0.5


def test_near_plane_triangles_crossing_the_camera_plane(gl):
    # a floor quad running from in front of the camera to behind it
    verts = np.array([[-50, -5, -200], [50, -5, -200], [50, -5, 40], [-50, -5, 40]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    cam = look_at((0, 0, 10), (0, 0, -100), fov=60, width=64, near=1.0, far=500.0)
    mesh = RenderMesh(verts, faces)
    a = gl.render(mesh, cam, passes=("mask", "depth"))
    b = Renderer("torch").render(mesh, cam, passes=("mask", "depth"))
    assert a["mask"].sum() > 500 and not a["mask"][:20].any()  # floor in the lower half only
    assert (a["mask"] ^ b["mask"]).sum() <= 2
    both = a["mask"] & b["mask"]
    assert np.allclose(a["depth"][both], b["depth"][both], rtol=1e-4)


def test_barycentric_interpolation_gradients_match_finite_differences():
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=10.0)
    verts, faces = np.asarray(sphere.vertices) * [1.0, 0.8, 1.1], np.asarray(sphere.faces)
    cam = framed_camera(verts, 20.0, 10.0, 24)
    v = torch.tensor(verts, dtype=torch.float64, requires_grad=True)
    f = torch.tensor(faces)
    clip = rt.to_clip(v, cam.clip_matrix())
    frags = rt.rasterize(clip.detach(), f, 24, 24, cam.near, cam.far)
    weights = torch.randn(len(frags.pix), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(vv):
        c = rt.to_clip(vv, cam.clip_matrix())
        bary = rt.barycentrics(c, f, frags)
        depth = rt.interpolate(c[0, :, 3:4], f, frags, bary)
        pos = rt.interpolate(vv, f, frags, bary)
        return (pos * weights).sum() + depth.sum()

    assert torch.autograd.gradcheck(loss, (v,), eps=1e-6, atol=1e-5)


def test_texture_sampling_gradients_and_mip_filtering():
    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    uv = (torch.rand(20, 2, dtype=torch.float64, generator=gen) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, u: rt.texture(t, u), (tex, uv), eps=1e-6, atol=1e-5)
    # texel centres: uv (0.5+i)/W hits texel i exactly; row 0 of the image is v = 1
    img = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    hit = rt.texture(img, torch.tensor([[0.125, 0.875], [0.875, 0.125]], dtype=torch.float64))
    assert hit[:, 0].tolist() == [0.0, 15.0]
    checker = torch.tensor(np.indices((64, 64)).sum(0) % 2, dtype=torch.float64)[None, None]
    uv = torch.rand(50, 2, dtype=torch.float64, generator=gen)
    far = rt.texture(checker, uv, uv_da=torch.full((50, 4), 0.5, dtype=torch.float64))  # 32 texels per pixel
    assert torch.allclose(far, torch.full_like(far, 0.5), atol=1e-6)
    near = rt.texture(checker, uv, uv_da=torch.full((50, 4), 1e-4, dtype=torch.float64))
    assert torch.allclose(near, rt.texture(checker, uv))  # magnified: plain bilinear


def test_visibility_uses_the_depth_test():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=5.0)
    verts = np.asarray(sphere.vertices)
    cam = look_at((0, 0, 40), fov=30, width=64)
    depth = np.zeros((64, 64))
    mask = np.zeros((64, 64), bool)
    assert not vertex_visibility(verts, cam, depth, mask).any()  # nothing rendered: nothing visible


@pytest.mark.parametrize("backend", ["gl", "torch"])
def test_tangent_space_normal_maps_follow_the_uv_layout(backend, request):
    if backend == "gl":
        request.getfixturevalue("gl")
    verts = np.array([[-10, -10, 0], [10, -10, 0], [10, 10, 0], [-10, 10, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    tilt = np.zeros((8, 8, 3))
    tilt[...] = (0.5, 0.0, np.sqrt(0.75))  # towards +u
    nmap = ((tilt * 0.5 + 0.5) * 255 + 0.5).astype(np.uint8)
    cam = look_at((0, 0, 50), fov=30, width=32)
    renderer = Renderer(backend)
    for uv, expect in ((np.array([[0, 0], [1, 0], [1, 1], [0, 1]]), (0.5, 0, 0.866)),  # u along +x
                       (np.array([[0, 1], [0, 0], [1, 0], [1, 1]]), (0, 0.5, 0.866))):  # u along +y
        mesh = RenderMesh(verts, faces, uv=uv.astype(np.float32), uv_faces=faces)
        out = renderer.render(mesh, cam, Material(normal_map=nmap), passes=("normal",))
        assert np.allclose(out["normal"][16, 16], expect, atol=0.01)


def _square_coverage(scale, angle=0.3, shift=None):
    """Antialiased coverage of a 10 cm square (rotated in plane) seen from 50 cm on a 32 px image."""
    cam = look_at((0, 0, 50), fov=30, width=32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    base = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float64)
    c, s = np.cos(angle), np.sin(angle)
    rot = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    verts = base @ rot.T * scale * 5
    if shift is not None:
        verts = verts + torch.stack([shift, shift * 0, shift * 0])
    clip = rt.to_clip(verts, cam.clip_matrix())
    frags = rt.rasterize(clip.detach(), faces, 32, 32, cam.near, cam.far)
    depth = rt.to_image(rt.interpolate(clip[0, :, 3:4], faces, frags, rt.barycentrics(clip, faces, frags)), frags)
    alpha = rt.to_image(torch.ones(len(frags.pix), 1, dtype=torch.float64), frags)
    return rt.antialias(alpha, frags, clip, faces, depth[..., 0]), cam


def test_antialias_gives_silhouettes_a_gradient():
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    alpha, cam = _square_coverage(scale)
    area = (cam.fx * 10 / 50) ** 2  # pixels covered by the square
    assert abs(alpha.sum().item() - area) < 0.01 * area  # coverage, not a count of pixel centres
    alpha.sum().backward()
    assert abs(scale.grad.item() - 2 * area) < 0.1 * 2 * area  # d(area)/d(scale) = 2 area
    eps = 1e-4
    fd = (_square_coverage(torch.tensor(1 + eps))[0].sum() - _square_coverage(torch.tensor(1 - eps))[0].sum()) / (2 * eps)
    assert abs(fd.item() - scale.grad.item()) < 1e-3 * abs(fd.item())
    shift = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    alpha, _ = _square_coverage(torch.tensor(1.0, dtype=torch.float64), shift=shift)
    (alpha[0, ..., 0] * torch.arange(32.0, dtype=torch.float64)).sum().backward()
    assert abs(shift.grad.item() - area * cam.fx / 50) < 0.1 * area * cam.fx / 50  # the outline moves with x


def test_differentiable_image_fits_a_translation(blob):
    """A few Adam steps on the torch picture recover a shift of the mesh (gradients through the outline)."""
    verts, faces, _ = blob
    cam = framed_camera(verts, 0.0, 0.0, 32)
    renderer = Renderer("torch")
    rig = LightRig([DirectionalLight((0.0, 0.0, 1.0))])
    target = renderer.image(RenderMesh(torch.tensor(verts + [1.5, -1.0, 0.0]), faces), cam, rig=rig).detach()
    shift = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([shift], lr=0.2)
    for _ in range(40):
        opt.zero_grad()
        img = renderer.image(RenderMesh(torch.tensor(verts) + shift, faces), cam, rig=rig)
        loss = ((img - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert np.allclose(shift.detach().numpy()[:2], [1.5, -1.0], atol=0.3)


def test_batched_rasterization_equals_one_by_one(blob):
    verts, faces, uv = blob
    cam = framed_camera(verts, 0.0, 0.0, 24)
    batch = torch.tensor(np.stack([verts, verts * 0.8 + [1.0, 0.5, 0.0]]), dtype=torch.float32)  # (2, V, 3)
    f = torch.tensor(faces)
    clip = rt.to_clip(batch, cam.clip_matrix())
    frags = rt.rasterize(clip, f, 24, 24, cam.near, cam.far)
    depth = rt.to_image(rt.interpolate(clip[..., 3:4], f, frags, rt.barycentrics(clip, f, frags)), frags)
    tex = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    uv_px = rt.interpolate(torch.tensor(uv), f, frags, rt.barycentrics(clip, f, frags))
    colour = rt.to_image(rt.texture(tex, uv_px, batch=torch.div(frags.pix, 24 * 24, rounding_mode="floor")), frags)
    for b in range(2):
        one = rt.rasterize(clip[b:b + 1], f, 24, 24, cam.near, cam.far)
        assert torch.equal(one.face_id[0], frags.face_id[b])
        d1 = rt.to_image(rt.interpolate(clip[b:b + 1, :, 3:4], f, one, rt.barycentrics(clip[b:b + 1], f, one)), one)
        assert torch.allclose(d1[0], depth[b])
        c1 = rt.to_image(rt.texture(tex[b:b + 1], rt.interpolate(torch.tensor(uv), f, one,
                                                                  rt.barycentrics(clip[b:b + 1], f, one))), one)
        assert torch.allclose(c1[0], colour[b])


@pytest.mark.parametrize("backend", ["gl", "torch"])
def test_both_backends_fill_the_same_gbuffer_fields(blob, backend, request):
    """One typed G-buffer for both backends: the shading fields are filled, per covered pixel, on both."""
    from topos_cli.render.renderer import GBuffer

    renderer = request.getfixturevalue("gl") if backend == "gl" else Renderer("torch")
    verts, faces, uv = blob
    cam = framed_camera(verts, 0.0, 0.0, 48)
    gb = renderer.gbuffer(RenderMesh(verts, faces, uv=uv, uv_faces=faces), cam,
                          Material(albedo_map=_gradient_texture()), passes=["mask", "position", "normal", "albedo",
                                                                            "roughness", "specular", "depth", "uv"])
    assert isinstance(gb, GBuffer) and gb.shape == (48, 48)
    n = len(gb.pix)
    assert 0.2 * 48 * 48 < n < 48 * 48
    for name, width in (("position", 3), ("normal", 3), ("albedo", 3), ("uv", 2)):
        assert getattr(gb, name).shape == (n, width), name
    for name in ("roughness", "specular", "depth"):
        assert getattr(gb, name).shape == (n,), name
    assert torch.allclose(gb.normal.norm(dim=-1), torch.ones(n), atol=2e-3)


def test_texture_cache_uploads_each_map_once():
    renderer = Renderer("torch")
    image = _gradient_texture()
    first = renderer.textures.get(image, "cpu", srgb=True)
    assert renderer.textures.get(image, "cpu", srgb=True) is first  # the same array: no second upload
    assert renderer.textures.get(image.copy(), "cpu", srgb=True) is not first  # another array: its own entry
    assert renderer.textures.get(image, "cpu", srgb=False) is not first  # another colour space


def test_visibility_tolerance_is_tolerance_pixels_at_the_grazing_slope():
    """A vertex behind the depth pass is visible up to tolerance x GRAZING_SLOPE footprints (+ DEPTH_REL_TOL)."""
    from topos_cli.render.renderer import DEPTH_REL_TOL, GRAZING_SLOPE

    cam = look_at((0, 0, 40), fov=30, width=64)
    depth = np.full((64, 64), 40.0)
    mask = np.ones((64, 64), bool)
    footprint = 40.0 / cam.fx
    allowed = 2.0 * GRAZING_SLOPE * footprint + DEPTH_REL_TOL * 40.0
    behind = np.array([[0.0, 0.0, -0.9 * allowed], [0.0, 0.0, -1.1 * allowed]])  # z = 40 + that, behind the plane
    assert vertex_visibility(behind, cam, depth, mask, tolerance=2.0).tolist() == [True, False]
