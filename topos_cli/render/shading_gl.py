"""GLSL twin of `shading.py` for the GL backend's fast colour pass (same formulas, line for line).

The torch code is the reference; `tests/unit/test_render_raster.py` renders with both backends and
compares colours, so a change to one must be mirrored in the other. Rigs with more than `MAX_LIGHTS`
light samples fall back to the torch shader.
"""

from __future__ import annotations

import numpy as np

from topos_cli.render.lights import AmbientLight, AreaLight, DirectionalLight, EnvLight, LightRig, PointLight

MAX_LIGHTS = 16

GLSL = """
const float PI = 3.14159265358979;
// N_LIGHTS, GGX and HAS_ENV are compile-time constants (one program per rig shape): llvmpipe runs
// fixed-count loops much faster than loops bounded by a uniform.
uniform vec3 u_eye;
uniform int u_lkind[16]; uniform vec3 u_lvec[16]; uniform vec3 u_lrad[16]; uniform float u_ldref2[16];
uniform vec3 u_lnrm[16];
uniform vec3 u_ambient; uniform vec3 u_sh[9];

void sh9(vec3 d, out float y[9]) {
    y[0] = 0.282095; y[1] = 0.488603 * d.y; y[2] = 0.488603 * d.z; y[3] = 0.488603 * d.x;
    y[4] = 1.092548 * d.x * d.y; y[5] = 1.092548 * d.y * d.z; y[6] = 0.315392 * (3.0 * d.z * d.z - 1.0);
    y[7] = 1.092548 * d.x * d.z; y[8] = 0.546274 * (d.x * d.x - d.y * d.y);
}

float env_brdf(float r, float nv, float f0) {
    float r0 = -r + 1.0, r1 = -0.0275 * r + 0.0425, r2 = -0.572 * r + 1.04, r3 = 0.022 * r - 0.04;
    float a004 = min(r0 * r0, exp2(-9.28 * nv)) * r0 + r1;
    return f0 * (-1.04 * a004 + r2) + (1.04 * a004 + r3);
}

vec3 to_srgb(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(12.92 * c, 1.055 * pow(max(c, vec3(1e-8)), vec3(1.0 / 2.4)) - 0.055, greaterThan(c, vec3(0.0031308)));
}

vec3 shade(vec3 p, vec3 normal, vec3 alb, float rough, float spec) {
    vec3 v = normalize(u_eye - p);
    vec3 n = normalize(normal);
    if (dot(n, v) < 0.0) n = -n;  // two-sided
    float f0 = clamp(0.028 * spec, 0.0, 1.0);
    float nv = max(dot(n, v), 1e-4);
    float alpha = max(rough * rough, 1e-3);
    float a2 = alpha * alpha, k = alpha / 2.0;
    float g1v = nv / (nv * (1.0 - k) + k);
    vec3 col = alb * u_ambient;
    for (int i = 0; i < N_LIGHTS; i++) {
        vec3 l; vec3 rad = u_lrad[i];
        if (u_lkind[i] == 0) {
            l = normalize(u_lvec[i]);
        } else {
            vec3 d = u_lvec[i] - p;
            float d2 = max(dot(d, d), 1e-6);
            l = d * inversesqrt(d2);
            rad *= u_ldref2[i] / d2;
            if (u_lkind[i] == 2) rad *= max(-dot(l, u_lnrm[i]), 0.0);
        }
        float nl = max(dot(n, l), 0.0);
        vec3 term = alb * nl;
        if (GGX == 1 && nl > 0.0) {
            vec3 h = normalize(v + l);
            float nh = max(dot(n, h), 0.0), vh = max(dot(v, h), 0.0);
            float dd = nh * nh * (a2 - 1.0) + 1.0;
            float D = a2 / (PI * dd * dd);
            float G = nl / (nl * (1.0 - k) + k) * g1v;
            float m = 1.0 - vh, m2 = m * m;
            float F = f0 + (1.0 - f0) * (m2 * m2 * m);
            term += vec3(PI / 4.0 * D * G * F / nv);
        }
        col += term * rad;
    }
    if (HAS_ENV == 1) {
        const float irr_w[9] = float[9](1.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 0.25, 0.25, 0.25, 0.25, 0.25);
        float y[9];
        sh9(n, y);
        vec3 irr = vec3(0.0);
        for (int i = 0; i < 9; i++) irr += u_sh[i] * (y[i] * irr_w[i]);
        col += alb * max(irr, 0.0);
        if (GGX == 1) {
            vec3 r = normalize(2.0 * nv * n - v);
            vec3 rad = vec3(0.0);
            sh9(r, y);
            float b1 = exp(-0.5 * rough), b2 = exp(-1.5 * rough);  // exp(-0.25 rough l (l + 1)), l = 1, 2
            rad = u_sh[0] * y[0] + (u_sh[1] * y[1] + u_sh[2] * y[2] + u_sh[3] * y[3]) * b1
                + (u_sh[4] * y[4] + u_sh[5] * y[5] + u_sh[6] * y[6] + u_sh[7] * y[7] + u_sh[8] * y[8]) * b2;
            col += max(rad, 0.0) * env_brdf(rough, nv, f0);
        }
    }
    return col;
}
"""


DEFINES = ("N_LIGHTS", "GGX", "HAS_ENV")


def light_uniforms(rig: LightRig, eye, model: str) -> dict | None:
    """Uniform values (and the compile-time `DEFINES`) for `GLSL` from a rig, or None when it has more than
    MAX_LIGHTS light samples."""
    kind, vec, rad, dref2, nrm = [], [], [], [], []
    ambient = np.zeros(3)
    sh = np.zeros((3, 9))
    has_env = 0
    for light in rig.lights:
        colour = np.asarray(light.color, np.float64) * light.intensity if not isinstance(light, EnvLight) else None
        if isinstance(light, AmbientLight):
            ambient += colour
        elif isinstance(light, EnvLight):
            sh += np.asarray(light.sh, np.float64) * light.intensity
            has_env = 1
        elif isinstance(light, DirectionalLight):
            kind.append(0), vec.append(light.direction), rad.append(colour), dref2.append(0.0), nrm.append((0, 0, 0))
        elif isinstance(light, PointLight):
            kind.append(1), vec.append(light.position), rad.append(colour), dref2.append(light.distance_ref ** 2)
            nrm.append((0, 0, 0))
        elif isinstance(light, AreaLight):
            pts, emit_n, weight = light.points()
            for p in pts:
                kind.append(2), vec.append(p), rad.append(colour * weight), dref2.append(light.distance_ref ** 2)
                nrm.append(emit_n)
    if len(kind) > MAX_LIGHTS:
        return None
    pad = MAX_LIGHTS - len(kind)
    tup = lambda rows: [tuple(float(x) for x in r) for r in rows] + [(0.0, 0.0, 0.0)] * pad  # noqa: E731
    return {"u_eye": tuple(float(x) for x in eye), "N_LIGHTS": len(kind), "GGX": int(model == "ggx"),
            "u_lkind": list(kind) + [0] * pad, "u_lvec": tup(vec), "u_lrad": tup(rad),
            "u_ldref2": [float(x) for x in dref2] + [0.0] * pad, "u_lnrm": tup(nrm),
            "u_ambient": tuple(float(x) for x in ambient), "HAS_ENV": has_env,
            "u_sh": [tuple(float(x) for x in sh[:, i]) for i in range(9)]}
