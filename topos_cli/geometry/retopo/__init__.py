"""Non-rigid template fitting: scan -> template-ordered vertices (pure numpy/scipy).

Three stages, each usable alone (the pipeline in `pipelines/retopo.py` chains them), one concept a module:

1. `search.prealign`: a similarity transform (scale, rotation, translation) that brings the scan into the template
   frame: an orientation search over whole-scan starts (`pose`: batched trimmed ICP and pose scores) and, for
   scans that hold more than a head, head hypotheses inside the scan (`hypotheses`). Background planes can be
   removed first (`planes`).
2. `bases.fit_bases`: alternating least squares over the template's linear shape bases (identity + expression)
   and the similarity, with point-to-plane, distance-gated, normal-compatible correspondences in both
   directions (`matches`) and a Gaussian (ridge) prior on the coefficients. Tangential sliding cannot happen here:
   the bases carry the semantic correspondence.
3. `refine.refine`: displacement field on top of the prior, min  sum_i w_i |x_i + d_i - c_i|^2 + alpha |L d|^2 * k_i,
   where c_i is the foot of x_i on the scan's tangent plane (normal-only pull, so vertices do not slide),
   L the uniform Laplacian (bi-Laplacian energy: where the scan has holes the displacement is smoothly
   interpolated and the shape follows the prior), k_i a per-vertex stiffness (eye/mouth boundary loops and
   landmarks' neighbourhoods stiffer). A decreasing alpha schedule as in optimal-step NICP.

Scan samples are `geometry.similarity.PointCloud`s and poses `geometry.similarity.Similarity`s (the one alignment
toolkit, shared with `geometry/align.py`). All arrays are float64 internally.
"""

from topos_cli.geometry.retopo.bases import fit_bases, project_on_bases, refine_similarity
from topos_cli.geometry.retopo.planes import Plane, find_planes, without_planes
from topos_cli.geometry.retopo.refine import refine, stiffness_weights
from topos_cli.geometry.retopo.search import prealign
from topos_cli.geometry.retopo.types import Candidate, HairLayer, orient_normals, outward_normals, sample_scan
from topos_cli.geometry.similarity import PointCloud, Similarity, pca_normals, umeyama

__all__ = [
    "Candidate",
    "HairLayer",
    "Plane",
    "PointCloud",
    "Similarity",
    "find_planes",
    "fit_bases",
    "orient_normals",
    "outward_normals",
    "pca_normals",
    "prealign",
    "project_on_bases",
    "refine",
    "refine_similarity",
    "sample_scan",
    "stiffness_weights",
    "umeyama",
    "without_planes",
]
