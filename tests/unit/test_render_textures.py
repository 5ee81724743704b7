"""Procedural appearance: skin tone model, UV atlas, seeded synthesis."""

import numpy as np

from topos_cli.render.textures import (
    SKIN_TONES,
    build_atlas,
    feature_masks,
    skin_albedo,
    synthesize,
    tone_melanin,
)


def _srgb(a):
    return np.where(a <= 0.0031308, 12.92 * a, 1.055 * a ** (1 / 2.4) - 0.055) * 255


def test_skin_tones_span_light_to_dark_and_stay_skin_coloured():
    tones = np.array([skin_albedo(tone_melanin(t), 0.01) for t in range(SKIN_TONES)])
    assert SKIN_TONES >= 14
    lum = tones @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(lum) < 0).all()  # more melanin, darker
    assert (tones[:, 0] > tones[:, 1]).all() and (tones[:, 1] > tones[:, 2]).all()  # red > green > blue
    assert np.allclose(_srgb(tones[0]), [223, 191, 178], atol=3)
    assert np.allclose(_srgb(tones[-1]), [79, 53, 35], atol=3)
    redder = skin_albedo(0.05, 0.04)
    base = skin_albedo(0.05, 0.01)
    assert redder[1] < base[1] and redder[0] / redder[1] > base[0] / base[1]  # blood absorbs green


def test_atlas_covers_the_uv_layout_and_maps_back_to_positions(tiny_template):
    t = tiny_template
    atlas = build_atlas(t.verts, t.faces, t.uv, t.uv_faces, t.regions, t.landmarks, size=64)
    assert atlas.covered.mean() > 0.5
    radius = np.linalg.norm(atlas.position[atlas.covered], axis=-1)
    assert np.abs(radius - 10).max() < 1.0  # texels lie on the (faceted) 10 cm sphere
    top = atlas.regions["top_left"] + atlas.regions["top_right"]
    assert top[:8].mean() > 0.9 and top[-8:].mean() < 0.1  # row 0 is v = 1: the top of the head
    masks = feature_masks(atlas)
    assert set(masks) >= {"lips", "brows", "cheeks", "beard", "eyeliner"}
    assert all(m.shape == (64, 64) and 0 <= m.min() and m.max() <= 1 for m in masks.values())


def test_synthesis_is_seeded_and_records_its_parameters(tiny_template):
    t = tiny_template
    atlas = build_atlas(t.verts, t.faces, t.uv, t.uv_faces, t.regions, None, size=64)
    a = synthesize(atlas, np.random.default_rng(5), makeup=1.0)
    b = synthesize(atlas, np.random.default_rng(5), makeup=1.0)
    c = synthesize(atlas, np.random.default_rng(6), makeup=1.0)
    assert np.array_equal(a.albedo, b.albedo) and a.params == b.params
    assert not np.array_equal(a.albedo, c.albedo)
    assert a.albedo.shape == (64, 64, 3) and a.albedo.dtype == np.uint8
    assert a.roughness.shape == (64, 64) and a.specular.shape == (64, 64)
    assert {"tone", "melanin", "blood", "roughness", "specular", "blush", "lipstick"} <= set(a.params)
    dark = synthesize(atlas, np.random.default_rng(1), tone=15, makeup=0.0)
    light = synthesize(atlas, np.random.default_rng(1), tone=0, makeup=0.0)
    assert dark.albedo.mean() < 0.6 * light.albedo.mean()


def test_padding_is_a_smooth_pull_push_fill_not_stair_steps():
    from topos_cli.render.textures import fill_padding

    size = 64
    rows, cols = np.mgrid[0:size, 0:size]
    covered = (rows - 20) ** 2 + (cols - 24) ** 2 < 12 ** 2  # one island
    image = np.where(covered, cols / size, 0.0)  # a ramp inside, garbage (zeros) outside
    filled = fill_padding(image, covered)
    assert np.array_equal(filled[covered], image[covered])  # charts untouched
    inside = image[covered]
    assert inside.min() - 1e-9 <= filled.min() and filled.max() <= inside.max() + 1e-9  # no new colours
    jumps = np.abs(np.diff(filled, axis=1))[:, :][~covered[:, 1:] & ~covered[:, :-1]]
    assert jumps.max() < 0.05  # a smooth continuation: no step larger than a few ramp texels (1/64 each)
    rgb = fill_padding(np.stack([image] * 3, -1), covered)
    np.testing.assert_allclose(rgb[..., 1], filled)


def test_tattoos_stay_inside_one_chart(tiny_template):
    """The toy sphere's UVs are cut at u = 0/1: a tattoo disc across that seam must be moved."""
    from scipy import ndimage

    t = tiny_template
    atlas = build_atlas(t.verts, t.faces, t.uv, t.uv_faces, t.regions, None, size=64)
    pts = atlas.position.reshape(-1, 3) / atlas.scale * 20.0
    placed = moved = 0
    for seed in range(40):
        p = synthesize(atlas, np.random.default_rng(seed), makeup=1.0).params
        if "tattoo" not in p or "center" not in p["tattoo"]:
            continue
        disc = (np.linalg.norm(pts - np.asarray(p["tattoo"]["center"]), axis=1) < p["tattoo"]["radius"] + 1e-6)
        assert ndimage.label(disc.reshape(64, 64) & atlas.covered, structure=np.ones((3, 3)))[1] == 1
        placed += 1
        moved += p["tattoo"]["placements"] > 1
    assert placed >= 4 and moved >= 1
