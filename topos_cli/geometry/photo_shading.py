"""Analysis by synthesis, photometric part: refine a fitted head's shape so its shading explains the photo.

After the landmark fit (`photo_fit.py`) the head is posed in the photo's camera. Here its skin (forehead, nose,
cheeks, chin, jaw, temples; not the eyes, brows or lips, whose colours are their own) is compared with the photo
at every visible vertex: ``I_c(v) ≈ sum_k L_ck Y_k(n_v)``, a constant albedo per channel folded into a lighting
``L`` over a shading basis ``Y`` of the camera-frame normal (order-2 spherical harmonics, plus the cubic
monomials: a key light's clamped cosine is not band-limited to order 2). For a given shape the lighting is a
weighted least-squares solve, done inside the loss (variable projection), so only the shape and a small pose
correction are free: ``verts = posed + sum_k c_k B_k`` with ``B`` the prior's principal directions scaled by
their standard deviations (``c ~ N(0, 1)``; `shape_prior.py`). Freckles, blotches, stubble and specular
highlights are outliers of a constant albedo: Cauchy weights (IRLS, re-estimated each round) drop them.

The landmarks keep the head where the detector saw it (their Huber residuals, as in the landmark fit, weighted
by `landmark_weight`), and the prior keeps ``c`` small. Gradients are torch autograd (normals, the lighting
solve, the projection); L-BFGS with a strong-Wolfe line search. The photo is sampled at the projected vertices
once per round (blurred to the vertex spacing), so the photometric gradient acts through the normals: shape from
shading, not a texture alignment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from topos_cli.geometry.mesh_ops import vertex_normals_torch as vertex_normals
from topos_cli.geometry.photo_fit import EYE_OUTER, HUBER  # the landmark residuals' unit and Huber threshold

SKIN_REGIONS = ("forehead", "nose", "cheek", "cheekbone", "chin", "jaw", "temple")  # shaded skin
NOT_SKIN = ("eye", "brow", "mouth")  # their own colours (iris, brows, lips) break a constant albedo
DTYPE = torch.float32  # the optimisation's precision: float64 gave the same benchmark errors within 0.002 % at ~1.4x the time


@dataclass
class ShadingConfig:
    """Weights and schedule of the photometric refinement (defaults chosen on the generate-geo benchmark).

    Attributes:
        prior_weight: weight of |c|^2 (c ~ N(0, 1) per principal direction) relative to the photometric term.
        landmark_weight: weight of the landmark Huber term.
        order: shading basis: 2 = order-2 SH (9 terms), 3 = plus the 10 cubic monomials.
        rounds: re-samplings of the photo and re-estimations of the robust weights; iterations: L-BFGS per round.
        blur_px: Gaussian blur of the photo (pixels) before sampling, about the vertex spacing.
        cauchy: Cauchy scale of the colour residual (fraction of the skin's median intensity).
        min_view_cos: vertices seen more obliquely are not used.
        ridge: relative Tikhonov weight of the lighting solve.
        min_inliers: below this share of robust weight among the visible skin vertices (hair, a beard, a hat,
            make-up, a harsh cast shadow over the face) the shading model does not explain the photo: the shape
            is left as the landmark fit made it.
    """

    prior_weight: float = 0.06
    landmark_weight: float = 1.0
    order: int = 3
    rounds: int = 3
    iterations: int = 25
    blur_px: float = 1.5
    cauchy: float = 0.15
    min_view_cos: float = 0.35
    ridge: float = 1e-3
    min_inliers: float = 0.15  # synthetic benchmark portraits: 0.25-0.65; real photos 0.22-0.38, Grace Hopper 0.13


@dataclass
class ShadingFit:
    """Result of `refine_shading`.

    Attributes:
        coefficients: (K,) weights of the basis directions (the shape change is ``coefficients @ basis``).
        rotation / translation: the refined head pose (template frame to camera).
        lighting: (T, 3) shading-basis coefficients per channel (photo intensities / the skin's median).
        residual: median colour residual of the used vertices at the end (same units).
        residual_px: (L, 2) landmark reprojection error of the refined head (pixels).
        vertices_used: skin vertices visible in the photo. inliers: their share of robust weight (first round).
        applied: False when too little skin was seen or too little of it fits the model (the shape is unchanged).
        seconds: wall time.
    """

    coefficients: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    lighting: np.ndarray
    residual: float
    residual_px: np.ndarray
    vertices_used: int
    inliers: float
    applied: bool
    seconds: float


@dataclass
class LandmarkTarget:
    """Detected landmarks and where they sit on the mesh (the template's landmark map)."""

    pixels: np.ndarray  # (L, 2) detected positions (pixel centres at +0.5)
    triangles: np.ndarray  # (L,) template face of each landmark
    barycentrics: np.ndarray  # (L, 3)
    weights: np.ndarray  # (L,) reliability (0 = unused)


def skin_vertices(template) -> np.ndarray:
    """Sorted vertex indices of the shaded skin (SKIN_REGIONS without NOT_SKIN)."""
    have = [r for r in SKIN_REGIONS if r in template.regions]
    if not have:
        return np.zeros(0, np.int64)
    skin = np.unique(np.concatenate([template.region(r) for r in have]))
    drop = [template.region(r) for r in NOT_SKIN if r in template.regions]
    return np.setdiff1d(skin, np.concatenate(drop)) if drop else skin


def shading_basis(normals: torch.Tensor, order: int = 3) -> torch.Tensor:
    """(N, 9 or 19) order-2 real SH terms (unnormalised) of unit normals, plus cubic monomials when order >= 3."""
    x, y, z = normals.unbind(-1)
    terms = [torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1]
    if order >= 3:
        terms += [x ** a * y ** b * z ** (3 - a - b) for a in range(4) for b in range(4 - a)]
    return torch.stack(terms, -1)


def rotation_from_vector(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, differentiable (also at omega = 0 through the small-angle epsilon)."""
    theta = torch.sqrt((omega * omega).sum() + 1e-24)
    k = omega / theta
    zero = torch.zeros((), dtype=omega.dtype)
    cross = torch.stack([torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]),
                         torch.stack([-k[1], k[0], zero])])
    eye = torch.eye(3, dtype=omega.dtype)
    return eye + torch.sin(theta) * cross + (1 - torch.cos(theta)) * (cross @ cross)


def solve_lighting(basis: torch.Tensor, colour: torch.Tensor, weight: torch.Tensor, ridge: float) -> torch.Tensor:
    """(T, 3) weighted least-squares lighting: colour ≈ basis @ L (differentiable in `basis`)."""
    wb = basis * weight[:, None]
    gram = wb.T @ basis
    gram = gram + ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.solve(gram, wb.T @ colour)


class _Problem:
    """The refinement's variables (shape coefficients, pose correction) and its loss terms, on the vertices it
    reads only (the skin, its one-ring, the landmarks' triangles: ~60 % of a head)."""

    def __init__(self, posed, basis, faces, rotation, translation, intrinsics, skin, target: LandmarkTarget):
        f64 = DTYPE
        faces = np.asarray(faces, np.int64)
        corners = faces[np.asarray(target.triangles, np.int64)]
        near = faces[np.isin(faces, skin).any(1)]  # every face around a skin vertex: its normal is exact
        used = np.unique(np.concatenate([near.ravel(), corners.ravel(), skin]))
        local = np.full(len(posed), -1, np.int64)
        local[used] = np.arange(len(used))
        self.full_posed, self.full_basis, self.all_faces = np.asarray(posed), np.asarray(basis), faces
        self.posed = torch.as_tensor(np.asarray(posed)[used], dtype=f64)
        self.basis = torch.as_tensor(np.asarray(basis)[:, used].reshape(len(basis), -1), dtype=f64)  # (K, U*3)
        self.faces = torch.as_tensor(local[near])
        self.skin = torch.as_tensor(local[np.asarray(skin, np.int64)])
        self.r0 = torch.as_tensor(np.asarray(rotation), dtype=f64)
        self.t0 = torch.as_tensor(np.asarray(translation), dtype=f64)
        self.intrinsics = tuple(float(v) for v in intrinsics)
        self.coeffs = torch.zeros(len(self.basis), dtype=f64, requires_grad=True)
        self.omega = torch.zeros(3, dtype=f64, requires_grad=True)
        self.tau = torch.zeros(3, dtype=f64, requires_grad=True)
        self.lm_corners = torch.as_tensor(local[corners])
        self.lm_bary = torch.as_tensor(np.asarray(target.barycentrics), dtype=f64)
        self.lm_weight = torch.as_tensor(np.asarray(target.weights), dtype=f64)
        self.lm_pixels = torch.as_tensor(np.asarray(target.pixels), dtype=f64)
        eyes = np.asarray(target.pixels)[list(EYE_OUTER)]
        self.eye_px = max(float(np.linalg.norm(eyes[0] - eyes[1])), 1.0)

    def full_verts(self) -> np.ndarray:
        """(V, 3) float32 the whole head at the current coefficients (template frame)."""
        coeffs = self.coeffs.detach().numpy()
        return (self.full_posed + np.tensordot(coeffs, self.full_basis, 1)).astype(np.float32)

    def geometry(self):
        """(verts in the template frame, rotation, verts in the camera frame)."""
        verts = self.posed + (self.coeffs @ self.basis).view(-1, 3)
        rot = rotation_from_vector(self.omega) @ self.r0
        return verts, rot, verts @ rot.T + self.t0 + self.tau

    def project(self, points: torch.Tensor) -> torch.Tensor:
        fx, fy, cx, cy = self.intrinsics
        return torch.stack([fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy], -1)

    def landmark_loss(self, cam: torch.Tensor) -> torch.Tensor:
        points = (self.lm_bary[:, :, None] * cam[self.lm_corners]).sum(1)
        dist = ((self.project(points) - self.lm_pixels) / self.eye_px).norm(dim=1)
        huber = torch.where(dist < HUBER, 0.5 * dist * dist, HUBER * (dist - 0.5 * HUBER))
        return (self.lm_weight * huber).sum()


def _observe(problem: _Problem, photo: np.ndarray, depth_fn, config: ShadingConfig):
    """Sample the photo at the visible skin vertices: (colour / its median per channel, visible mask), DTYPE."""
    import cv2

    with torch.no_grad():
        verts, rot, cam = problem.geometry()
        normals = vertex_normals(verts, problem.faces)[problem.skin] @ rot.T
        points = cam[problem.skin]
        pix = problem.project(points).numpy()
        cos = (normals * -points / points.norm(dim=1, keepdim=True)).sum(1).numpy()
    h, w = photo.shape[:2]
    col, row = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    visible = inside & (cos > config.min_view_cos)
    if depth_fn is not None:
        depth = depth_fn(problem.full_verts(), rot.numpy(), (problem.t0 + problem.tau).detach().numpy())
        z = points[:, 2].numpy()
        d = depth[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
        visible &= (d > 0) & (np.abs(z - d) < 0.3 + 2.0 * z / problem.intrinsics[0])  # 3 mm + 2 pixel footprints
    grid = (pix - 0.5).astype(np.float32)
    colour = cv2.remap(photo, grid[None, :, 0], grid[None, :, 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)[0].astype(np.float64)
    scale = np.median(colour[visible], axis=0) if visible.any() else np.ones(colour.shape[1])
    colour = colour / np.maximum(scale, 1e-6)  # per channel: a red skin's R residuals do not outweigh G and B
    return torch.as_tensor(colour, dtype=DTYPE), torch.as_tensor(visible, dtype=DTYPE)


def _robust_weights(problem: _Problem, colour, visible, config: ShadingConfig):
    """Cauchy IRLS weights of the vertices for the current shape (3 passes)."""
    with torch.no_grad():
        verts, rot, _ = problem.geometry()
        basis = shading_basis(vertex_normals(verts, problem.faces)[problem.skin] @ rot.T, config.order)
        weight = visible.clone()
        for _ in range(3):
            light = solve_lighting(basis, colour, weight, config.ridge)
            resid = (colour - basis @ light).norm(dim=1)
            weight = visible / (1 + (resid / config.cauchy) ** 2)
    return weight, light, float(resid[visible > 0].median()) if (visible > 0).any() else 0.0


def refine_shading(photo_linear: np.ndarray, posed: np.ndarray, basis: np.ndarray, faces: np.ndarray,
                   rotation: np.ndarray, translation: np.ndarray, intrinsics, skin: np.ndarray,
                   target: LandmarkTarget, depth_fn=None, config: ShadingConfig | None = None) -> ShadingFit:
    """Refine a posed head's shape (and pose) so that its shading explains the photo.

    Args:
        photo_linear: (H, W, 3) float32 photo in linear light (`render.lights.srgb_to_linear`).
        posed: (V, 3) the head as fitted (template frame, cm). basis: (K, V, 3) shape directions, c ~ N(0, 1).
        faces: (F, 3) triangles. rotation / translation: its pose (template frame -> OpenCV camera).
        intrinsics: (fx, fy, cx, cy). skin: vertex indices compared with the photo (`skin_vertices`).
        target: the detected landmarks on the mesh.
        depth_fn: (verts, R, t) -> (H, W) camera-z depth pass for occlusion (None: facing test only).
    """
    import cv2

    config = config or ShadingConfig()
    t0 = time.perf_counter()
    photo = cv2.GaussianBlur(photo_linear, (0, 0), config.blur_px) if config.blur_px > 0 else photo_linear
    photo = np.ascontiguousarray(photo, np.float32)
    problem = _Problem(posed, basis, faces, rotation, translation, intrinsics, skin, target)
    light, resid, used, inliers, applied = torch.zeros((0, 3)), 0.0, 0, 0.0, True
    for round_ in range(config.rounds):
        colour, visible = _observe(problem, photo, depth_fn, config)
        used = int(visible.sum())
        if used < len(problem.skin) // 10:  # hardly any skin seen (profile, occlusion): leave the shape alone
            applied = round_ > 0
            break
        weight, light, resid = _robust_weights(problem, colour, visible, config)
        if round_ == 0:
            inliers = float(weight.sum()) / used
            if inliers < config.min_inliers:
                applied = False
                break
        _minimise(problem, colour, weight, config)
    with torch.no_grad():
        if not all(bool(torch.isfinite(p).all()) for p in (problem.coeffs, problem.omega, problem.tau)):
            for p in (problem.coeffs, problem.omega, problem.tau):  # a degenerate photo: keep the landmark fit
                p.zero_()
        _, rot, cam = problem.geometry()
        t = (problem.t0 + problem.tau).numpy()
        points = (problem.lm_bary[:, :, None] * cam[problem.lm_corners]).sum(1)
        residual_px = (problem.project(points) - problem.lm_pixels).numpy()
    return ShadingFit(problem.coeffs.detach().numpy().copy(), rot.numpy(), t, light.numpy(), resid, residual_px,
                      used, inliers, applied, time.perf_counter() - t0)


def _minimise(problem: _Problem, colour, weight, config: ShadingConfig) -> None:
    """L-BFGS on photometric + landmark + prior terms with the robust weights held fixed."""
    total = float(weight.sum())
    optimiser = torch.optim.LBFGS([problem.coeffs, problem.omega, problem.tau], lr=1.0,
                                  max_iter=config.iterations, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        verts, rot, cam = problem.geometry()
        basis = shading_basis(vertex_normals(verts, problem.faces)[problem.skin] @ rot.T, config.order)
        light = solve_lighting(basis, colour, weight, config.ridge)
        resid = colour - basis @ light
        photometric = (weight[:, None] * resid * resid).sum() / total / config.cauchy ** 2
        loss = (photometric + config.landmark_weight * problem.landmark_loss(cam)
                + config.prior_weight * (problem.coeffs * problem.coeffs).sum())
        loss.backward()
        return loss

    optimiser.step(closure)
