"""Analysis by synthesis, landmark part: fit camera pose, expression and shape of a head to 2D face landmarks.

The head is linear in its coefficients: ``verts = base + alpha @ identity + beta @ expression`` (template bases;
``base`` is the generator's neutral head, or the template's mean head without one). A landmark is a fixed
barycentric point of a template triangle (the derived mediapipe map), so its 3D position is the same linear
function of (alpha, beta) and the fit only ever touches the L landmark points, never the full mesh.

Camera: `render/camera.py`'s OpenCV convention. The head pose *is* the extrinsics: ``x_cam = R @ x + t`` maps
the template frame to the camera, pixels ``u = fx x/z + cx, v = fy y/z + cy`` (pixel centres at +0.5, which is
also where mediapipe's normalised points land when scaled by the image size). The focal length is given
(known, or from an assumed field of view): with one photo it trades off against distance and is not fitted.

Solver: scipy's trust-region reflective least squares (bounds keep expression weights in [0, 1] and the eye-gaze
shapes low) with the exact, analytic Jacobian; no finite differences. Residuals are
reprojection errors in units of the outer-eye-corner distance (so the priors' weights do not depend on image
size), weighted by the map's reliability, with a Huber loss against detector outliers; Tikhonov priors pull
identity weights (N(0, 1) units) towards 0, i.e. towards ``base``, and expression weights towards 0.

Initialisation: the head facing the camera at the distance its size implies, then a pose-only solve, from three
yaws if the first does not converge: robust for |yaw| up to ~60 degrees without PnP.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

EYE_OUTER = (33, 263)  # mediapipe points of the outer eye corners: the residuals' length unit
FRONTAL = np.diag([1.0, -1.0, -1.0])  # template (+Y up, face along +Z) to OpenCV camera axes, facing the camera
HEAD_WIDTH_CM = 15.0  # ear-to-ear width used only to guess the starting distance
INIT_YAWS = (0.0, -35.0, 35.0)  # starting yaws tried in turn until the pose solve fits
INIT_GOOD = 0.08  # pose-only RMS residual (eye-distance units) below which a start is accepted
EYE_LOOK_MAX = 0.25  # gaze shapes move the lids only a little; glasses pushed eyeLookUp to 0.75 unbounded
HUBER = 0.05  # eye-distance units (~3 px at 60 px between the eyes): beyond it, a residual counts linearly
LM_DAMPING = 1e-3  # Levenberg-Marquardt's starting damping (relative to the Hessian's diagonal)
LM_TOL = 1e-6  # stop when a step lowers the cost by less than this fraction
MAX_YAW_WARN = 35.0  # degrees: beyond it the detector's points drift and the fit is unreliable


@dataclass
class LandmarkModel:
    """The linear head model restricted to the landmark points.

    Attributes:
        base: (L, 3) landmark positions on the base head (cm).
        identity: (K, L, 3) identity-basis deltas at the landmarks (weights ~ N(0, 1)).
        expression: (E, L, 3) expression-basis deltas at the landmarks (weights in [0, 1]).
        weights: (L,) reliability of each landmark (0 = unused).
        expression_names: the E expression names (ARKit).
    """

    base: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    weights: np.ndarray
    expression_names: list[str] = field(default_factory=list)


@dataclass
class ContourModel:
    """The linear head model at the silhouette's candidate vertices (see `geometry/photo_silhouette.py`).

    Attributes:
        base: (S, 3) positions. identity: (K, S, 3). expression: (E, S, 3). normals: (S, 3) unit normals of base.
    """

    base: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    normals: np.ndarray


@dataclass
class FitConfig:
    """What the fit optimises and how strongly each prior pulls.

    Attributes:
        fit_identity / fit_expression: include those coefficients (else held at 0).
        identity_reg: weight of |alpha|^2 (pull towards the base head); larger when the base is a good prior.
        expression_reg: weight of |beta|^2.
        max_evals: residual evaluations of the full solve.
        silhouette_weight: weight of the silhouette residuals (0: landmarks only); silhouette_rounds: contour
            re-selections after the landmark solve.
    """

    fit_identity: bool = True
    fit_expression: bool = True
    identity_reg: float = 1e-3
    expression_reg: float = 1e-3
    max_evals: int = 40
    silhouette_weight: float = 0.0
    silhouette_rounds: int = 2


@dataclass
class LandmarkFit:
    """Result of `fit_landmarks`.

    Attributes:
        rotation: (3, 3) world (template) to camera rotation. translation: (3,) cm.
        identity: (K,) identity weights. expression: (E,) expression weights in [0, 1].
        residual_px: (L, 2) reprojection error per landmark (pixels; all landmarks, used or not).
        reprojection_px: median reprojection error (pixels) over the landmarks used (weight > 0).
        yaw, pitch, roll: head pose relative to the camera (degrees; yaw > 0 turns the face to its left).
        evaluations: residual evaluations. seconds: wall time.
        contour_points: silhouette contour points in the last round (0: no silhouette term, or none found).
    """

    rotation: np.ndarray
    translation: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    residual_px: np.ndarray
    reprojection_px: float
    yaw: float
    pitch: float
    roll: float
    evaluations: int
    seconds: float
    contour_points: int = 0


def landmark_model(base_verts: np.ndarray, identity: np.ndarray, expression: np.ndarray, triangles: np.ndarray,
                   barycentrics: np.ndarray, faces: np.ndarray, weights: np.ndarray,
                   expression_names=()) -> LandmarkModel:
    """Restrict a linear head model (V, 3) + (K, V, 3) + (E, V, 3) to barycentric landmark points.

    Args:
        triangles: (L,) template triangle of each landmark. barycentrics: (L, 3). faces: (F, 3) template faces.
    """
    corners = np.asarray(faces)[np.asarray(triangles)]  # (L, 3)
    bary = np.asarray(barycentrics, np.float64)

    def at(arr):  # (..., V, 3) -> (..., L, 3)
        return np.einsum("lk,...lkc->...lc", bary, np.asarray(arr, np.float64)[..., corners, :])

    return LandmarkModel(at(base_verts), at(identity), at(expression), np.asarray(weights, np.float64),
                         [str(n) for n in expression_names])


def matrix_to_rotvec(rot: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) axis-angle."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(rot, np.float64)).as_rotvec()


def head_pose_degrees(rot: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) of the head seen by a camera with world-to-camera rotation `rot`.

    The head's own rotation relative to a camera facing it is ``FRONTAL.T @ rot`` = Ry(yaw) Rx(pitch) Rz(roll)
    (`geometry.align.rotation_from_euler`'s order): yaw > 0 turns the face towards its left (+X)."""
    head = FRONTAL.T @ np.asarray(rot, np.float64)
    pitch = math.degrees(math.asin(float(np.clip(-head[1, 2], -1, 1))))
    yaw = math.degrees(math.atan2(head[0, 2], head[2, 2]))
    roll = math.degrees(math.atan2(head[1, 0], head[1, 1]))
    return yaw, pitch, roll


class _Problem:
    """Residuals and their exact Jacobian for one photo (parameters: rotvec 3, t 3, alpha K, beta E).

    The Jacobian is analytic (numpy): with X = R(w) P + t and the pinhole projection pi,
    dr/dt = dpi/dX, dr/dw = dpi/dX (-[R P]x J_l(w)) (J_l: SO(3)'s left Jacobian), dr/dalpha_k = dpi/dX R B_k.
    A few hundred microseconds per evaluation: the autodiff version cost 100x that on a shared CPU.
    """

    def __init__(self, model: LandmarkModel, target: np.ndarray, intrinsics, config: FitConfig, pose_only: bool):
        used = model.weights > 0
        self.base = model.base[used]
        none = np.zeros((0, int(used.sum()), 3))
        self.ident = model.identity[:, used] if config.fit_identity and not pose_only else none
        self.expr = model.expression[:, used] if config.fit_expression and not pose_only else none
        self.basis = np.concatenate([self.ident, self.expr])  # (K + E, L, 3)
        self.target = target[used]
        self.fx, self.fy, self.cx, self.cy = (float(v) for v in intrinsics)
        self.unit = max(float(np.linalg.norm(target[EYE_OUTER[0]] - target[EYE_OUTER[1]])), 1e-6)
        self.scale = np.sqrt(model.weights[used])[:, None] / self.unit  # (L, 1) residual scale
        self.k, self.e = self.ident.shape[0], self.expr.shape[0]
        self.reg = np.concatenate([np.full(self.k, math.sqrt(config.identity_reg)),
                                   np.full(self.e, math.sqrt(config.expression_reg))])

    def _project(self, x: np.ndarray, base: np.ndarray, basis: np.ndarray, with_jac: bool = True):
        """Pixels (S, 2) of points base + x[6:] @ basis and, with_jac, their Jacobian (S, 2, P)."""
        rot = rotation_matrix(x[:3])
        pts = base + np.tensordot(x[6:], basis, 1) if len(basis) else base
        rp = pts @ rot.T
        cam = rp + x[3:6]
        z = np.maximum(cam[:, 2], 1e-3)
        pix = np.stack([self.fx * cam[:, 0] / z + self.cx, self.fy * cam[:, 1] / z + self.cy], 1)
        if not with_jac:
            return pix, None
        dpi = np.zeros((len(cam), 2, 3))  # d pixel / d camera point
        dpi[:, 0, 0], dpi[:, 0, 2] = self.fx / z, -self.fx * cam[:, 0] / z**2
        dpi[:, 1, 1], dpi[:, 1, 2] = self.fy / z, -self.fy * cam[:, 1] / z**2
        d_rot = np.einsum("lic,lcd->lid", dpi, -_skew(rp)) @ _left_jacobian(x[:3])  # (S, 2, 3)
        blocks = [d_rot, dpi]
        if len(basis):
            blocks.append(np.einsum("lic,klc->lik", dpi @ rot, basis))  # (S, 2, K + E)
        return pix, np.concatenate(blocks, 2)

    def fun(self, x: np.ndarray) -> np.ndarray:
        pix, _ = self._project(x, self.base, self.basis, with_jac=False)
        return np.concatenate([((pix - self.target) * self.scale).reshape(-1), self.reg * x[6:]])

    def jac(self, x: np.ndarray) -> np.ndarray:
        _, jac = self._project(x, self.base, self.basis)
        top = (jac * self.scale[:, :, None]).reshape(-1, len(x))
        bottom = np.zeros((len(x) - 6, len(x)))
        bottom[:, 6:] = np.diag(self.reg)
        return np.concatenate([top, bottom])


class _SilhouetteProblem(_Problem):
    """_Problem plus one residual per selected contour point: the silhouette's signed distance at it."""

    def __init__(self, model, target, intrinsics, config: FitConfig, contour: ContourModel, sil, idx: np.ndarray):
        super().__init__(model, target, intrinsics, config, pose_only=False)
        self.sil = sil
        self.cbase = contour.base[idx]
        parts = [contour.identity[:self.k, idx], contour.expression[:self.e, idx]]
        self.cbasis = np.concatenate(parts) if self.k + self.e else np.zeros((0, len(idx), 3))
        self.sw = math.sqrt(config.silhouette_weight) / self.unit

    def fun(self, x: np.ndarray) -> np.ndarray:
        from topos_cli.geometry.photo_silhouette import sample

        pix, _ = self._project(x, self.cbase, self.cbasis, with_jac=False)
        return np.concatenate([super().fun(x), sample(self.sil.distance, pix) * self.sw])

    def jac(self, x: np.ndarray) -> np.ndarray:
        from topos_cli.geometry.photo_silhouette import sample

        pix, jac = self._project(x, self.cbase, self.cbasis)
        grad = np.stack([sample(self.sil.grad_x, pix), sample(self.sil.grad_y, pix)], 1)  # (S, 2)
        return np.concatenate([super().jac(x), np.einsum("si,sip->sp", grad, jac) * self.sw])


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) with skew(a) @ b = a x b."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2], out[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    out[..., 1, 0], out[..., 2, 0], out[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return out


def rotation_matrix(omega: np.ndarray) -> np.ndarray:
    """(3,) axis-angle (radians) -> (3, 3) rotation (Rodrigues, series near 0)."""
    theta2 = float(omega @ omega)
    k = _skew(np.asarray(omega, np.float64))
    if theta2 < 1e-12:
        return np.eye(3) + k + 0.5 * k @ k
    theta = math.sqrt(theta2)
    return np.eye(3) + math.sin(theta) / theta * k + (1 - math.cos(theta)) / theta2 * k @ k


def _left_jacobian(omega: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobian: d(R(w) p)/dw = -[R(w) p]x J_l(w)."""
    theta2 = float(omega @ omega)
    k = _skew(np.asarray(omega, np.float64))
    if theta2 < 1e-12:
        return np.eye(3) + 0.5 * k + k @ k / 6
    theta = math.sqrt(theta2)
    return np.eye(3) + (1 - math.cos(theta)) / theta2 * k + (theta - math.sin(theta)) / (theta2 * theta) * k @ k


def _bounds(model: LandmarkModel, k: int, e: int) -> tuple[np.ndarray, np.ndarray]:
    lower = np.concatenate([np.full(6, -np.inf), np.full(k, -np.inf), np.zeros(e)])
    upper_e = np.array([EYE_LOOK_MAX if n.startswith("eyeLook") else 1.0 for n in model.expression_names[:e]]
                       + [1.0] * max(0, e - len(model.expression_names)))
    return lower, np.concatenate([np.full(6 + k, np.inf), upper_e])


@dataclass
class _Solution:
    x: np.ndarray
    cost: float  # Huber cost of the residuals at x
    residuals: np.ndarray
    evaluations: int


def _huber(res: np.ndarray) -> tuple[float, np.ndarray]:
    """Huber cost (sum, quadratic inside HUBER) and the IRLS weight of each residual."""
    mag = np.abs(res)
    inside = mag <= HUBER
    cost = float(np.where(inside, res * res, 2 * HUBER * mag - HUBER * HUBER).sum())
    return cost, np.where(inside, 1.0, HUBER / np.maximum(mag, 1e-12))


def _solve(problem: _Problem, x0: np.ndarray, model: LandmarkModel, max_evals: int) -> _Solution:
    """Bounded Levenberg-Marquardt on the Huber cost (IRLS weights; steps projected onto the bounds).

    Solves the small normal equations ((6 + K + E)^2) instead of factoring the tall Jacobian: an SVD of
    the 1000 x 159 Jacobian (scipy's trust-region solvers) cost ~1 s per iteration on a busy 2-core CPU."""
    lower, upper = _bounds(model, problem.k, problem.e)
    x = np.clip(x0, lower, upper)
    res = problem.fun(x)
    cost, weight = _huber(res)
    evals, damping = 1, LM_DAMPING
    while evals < max_evals:
        jac = problem.jac(x)
        at_bound = (x <= lower) | (x >= upper)
        hess = jac.T @ (weight[:, None] * jac)
        grad = jac.T @ (weight * res)
        free = ~(at_bound & (((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))))
        improved = False
        while evals < max_evals and not improved:
            step = np.zeros_like(x)
            sub = hess[np.ix_(free, free)]
            step[free] = np.linalg.solve(sub + damping * (np.diag(np.diag(sub)) + 1e-9 * np.eye(len(sub))),
                                         -grad[free])
            x_new = np.clip(x + step, lower, upper)
            res_new = problem.fun(x_new)
            cost_new, weight_new = _huber(res_new)
            evals += 1
            improved = cost_new < cost
            if improved:
                done = cost - cost_new < LM_TOL * cost
                x, res, cost, weight = x_new, res_new, cost_new, weight_new
                damping = max(damping / 3, 1e-9)
                if done:
                    return _Solution(x, cost, res, evals)
            else:
                damping *= 4
        if not improved:
            break
    return _Solution(x, cost, res, evals)


def initial_pose(model: LandmarkModel, target: np.ndarray, intrinsics, config: FitConfig) -> tuple[np.ndarray, int]:
    """(6,) rotvec + translation of the base head that best explains the landmarks, and evaluations used."""
    fx, fy, cx, cy = intrinsics
    used = model.weights > 0
    span = np.ptp(target[used, 0])
    depth = fx * HEAD_WIDTH_CM / max(span, 1e-6) * 0.8  # the landmarks span ~80 % of the head's width
    centre = target[used].mean(0)
    shift = np.array([(centre[0] - cx) * depth / fx, (centre[1] - cy) * depth / fy, depth])
    problem = _Problem(model, target, intrinsics, config, pose_only=True)
    best, evals = None, 0
    for yaw in INIT_YAWS:
        from scipy.spatial.transform import Rotation

        rot = FRONTAL @ Rotation.from_euler("y", yaw, degrees=True).as_matrix()
        x0 = np.concatenate([matrix_to_rotvec(rot), shift - rot @ model.base[used].mean(0)])
        sol = _solve(problem, x0, model, 30)
        evals += sol.evaluations
        rms = math.sqrt(float(np.mean(sol.residuals ** 2)))
        if best is None or rms < best[1]:
            best = (sol.x, rms)
        if rms < INIT_GOOD:
            break
    return best[0], evals


def fit_landmarks(model: LandmarkModel, target: np.ndarray, intrinsics, config: FitConfig | None = None,
                  pose: np.ndarray | None = None, silhouette: tuple | None = None) -> LandmarkFit:
    """Fit pose, identity and expression to 2D landmarks.

    Args:
        model: `landmark_model(...)` of the template (base = the generator's head or the mean head).
        target: (L, 2) detected landmarks in pixels (same order as the model's points).
        intrinsics: (fx, fy, cx, cy) in pixels, `render/camera.py` convention.
        pose: optional (6,) rotvec + translation to start from (skips the initial pose search).
        silhouette: optional (ContourModel, photo_silhouette.SilhouetteTarget); used when
            config.silhouette_weight > 0.

    Returns:
        LandmarkFit (pose = camera extrinsics for the template frame).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # small dense algebra: BLAS threads only contend
        return _fit_landmarks(model, np.asarray(target, np.float64), intrinsics, config or FitConfig(), pose,
                              silhouette)


def _fit_landmarks(model, target, intrinsics, config: FitConfig, pose, silhouette) -> LandmarkFit:
    start = time.perf_counter()
    evals = 0
    if pose is None:
        pose, evals = initial_pose(model, target, intrinsics, config)
    problem = _Problem(model, target, intrinsics, config, pose_only=False)
    x0 = np.concatenate([pose, np.zeros(problem.k + problem.e)])
    sol = _solve(problem, x0, model, config.max_evals) if problem.k + problem.e else None
    x = sol.x if sol is not None else x0
    evals += sol.evaluations if sol is not None else 0
    contour = 0
    if silhouette is not None and config.silhouette_weight > 0:
        for _ in range(config.silhouette_rounds):
            idx = _contour(problem, x, *silhouette)
            contour = len(idx)
            if contour == 0:
                break
            sol = _solve(_SilhouetteProblem(model, target, intrinsics, config, silhouette[0], silhouette[1], idx),
                         x, model, config.max_evals // 2)
            x, evals = sol.x, evals + sol.evaluations
    return _result(model, problem, target, x, evals, time.perf_counter() - start, contour)


def _contour(problem: _Problem, x: np.ndarray, contour: ContourModel, sil) -> np.ndarray:
    """Contour points of the candidates at the current fit (photo_silhouette.contour_points)."""
    from topos_cli.geometry.photo_silhouette import contour_points

    basis = np.concatenate([contour.identity[:problem.k], contour.expression[:problem.e]])
    pix, _ = problem._project(x, contour.base, basis, with_jac=False)
    rot = rotation_matrix(x[:3])
    cam = (contour.base + np.tensordot(x[6:], basis, 1)) @ rot.T + x[3:6]
    return contour_points(cam, contour.normals @ rot.T, pix, sil, problem.unit)


def _result(model, problem: _Problem, target, x, evals, seconds, contour_points: int = 0) -> LandmarkFit:
    k, e = problem.k, problem.e
    alpha = np.zeros(model.identity.shape[0])
    beta = np.zeros(model.expression.shape[0])
    alpha[:k], beta[:e] = x[6:6 + k], x[6 + k:]
    rot = rotation_matrix(x[:3])
    full = model.base + np.tensordot(alpha, model.identity, 1) + np.tensordot(beta, model.expression, 1)
    cam = full @ rot.T + x[3:6]
    fx, fy, cx, cy = problem.fx, problem.fy, problem.cx, problem.cy
    pix = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], 1)
    residual = pix - target
    used = model.weights > 0
    yaw, pitch, roll = head_pose_degrees(rot)
    return LandmarkFit(rot, np.asarray(x[3:6], np.float64), alpha, beta, residual,
                       float(np.median(np.linalg.norm(residual[used], axis=1))), yaw, pitch, roll, int(evals), seconds,
                       int(contour_points))


def apply_coefficients(base_verts: np.ndarray, identity: np.ndarray, alpha: np.ndarray,
                       expression: np.ndarray | None = None, beta: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) float32 head: base + alpha @ identity (+ beta @ expression)."""
    verts = np.asarray(base_verts, np.float64) + np.tensordot(np.asarray(alpha, np.float64),
                                                              np.asarray(identity[:len(alpha)]), 1)
    if expression is not None and beta is not None:
        verts = verts + np.tensordot(np.asarray(beta, np.float64), np.asarray(expression[:len(beta)]), 1)
    return verts.astype(np.float32)
