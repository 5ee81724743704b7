"""`topos template info|export|import` as functions."""

from __future__ import annotations

from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.template import load_template


def template_info(template: str | Path | None = None) -> dict:
    """Counts, regions, landmarks, bases, boundary loops and hash of a template (`topos template info`)."""
    return load_template(template).summary()


def template_export(template: str | Path | None, out: str | Path, identity: list[float] | None = None,
                    expression: dict[str, float] | None = None, weights: str | Path | None = None) -> Path:
    """Write the template mesh, optionally with identity/expression weights applied (`topos template export`).

    Args:
        template: template name or folder.
        out: .obj (keeps UVs and polygons), .ply or .glb.
        identity: identity-mode weights (first len(identity) modes).
        expression: {ARKit expression name: weight}.
        weights: JSON file {"identity": [...], "expression": {name: w}} merged under the explicit ones.
    """
    from topos_cli.geometry.augment import apply_weights
    from topos_cli.io.fs import read_json
    from topos_cli.io.mesh import MeshData, save_mesh

    tpl = load_template(template)
    if weights is not None:
        data = read_json(weights)
        identity = identity if identity is not None else data.get("identity")
        expression = {**data.get("expression", {}), **(expression or {})}
    _check_weights(tpl, identity, expression)
    verts = apply_weights(tpl, identity=identity, expression=expression)
    return save_mesh(out, MeshData.from_template(tpl, verts))


def _check_weights(tpl, identity, expression) -> None:
    """UsageError for weights that are not finite numbers or more identity weights than the template has modes."""
    import math

    modes = len(tpl.bases["identity"]) if "identity" in tpl.bases else 0
    values = [*(identity or []), *(expression or {}).values()]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise UsageError("--identity and --expression weights must be finite numbers")
    if identity and len(identity) > modes:
        raise UsageError(f"--identity has {len(identity)} weights but template '{tpl.name}' has {modes} identity "
                         "modes")


def template_import(mesh: str | Path, out: str | Path, name: str | None = None,
                    regions: str | Path | None = None, landmarks: str | Path | None = None,
                    symmetry: bool = True, force: bool = False) -> dict:
    """Turn a studio's own mesh (MetaHuman, FLAME, in-house OBJ) into a template folder.

    Args:
        mesh: the topology, in its rest pose (OBJ keeps UVs and quads).
        out: template folder to create.
        name: template name (default: the folder name).
        regions: JSON {region: [vertex ids]} (default: one region "all").
        landmarks: JSON list of vertex ids, or {"scheme": ..., "indices": [...]}.
        symmetry: compute a left/right map by mirroring x (kept only if every vertex finds a partner).
        force: overwrite an existing template folder.
    """
    from topos_cli.geometry.template_import import build_template_meta
    from topos_cli.io.fs import read_json, write_json, write_text
    from topos_cli.io.mesh import load_mesh, save_mesh

    out = Path(out)
    if (out / "template.json").exists() and not force:
        raise UsageError(f"{out} already holds a template; pass --force to overwrite it")
    src = load_mesh(mesh)
    region_map = read_json(regions) if regions else None
    landmark_data = read_json(landmarks) if landmarks else None
    meta = build_template_meta(src.verts, src.faces, name or out.name, region_map, landmark_data, symmetry)
    save_mesh(out / "template.obj", src)
    write_json(out / "template.json", meta)
    write_text(out / "NOTICE", f"Imported from {Path(mesh).name}; the licence of the source mesh applies.\n")
    write_text(out / "README.md", f"# {meta['name']}\n\nImported with `topos template import {Path(mesh).name}`: "
               f"{len(src.verts)} vertices, {len(src.faces)} triangles, regions {sorted(meta['regions'])}.\n")
    return load_template(out).summary()
