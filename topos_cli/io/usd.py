"""USD writer for production heads (usd-core): UsdSkel skeleton + blend shapes, UsdPreviewSurface, USDZ.

`write_usd(path, asset, maps, units, animation)` writes .usd/.usdc (binary), .usda (text) or .usdz (a
package with its textures):

    /<name>                     SkelRoot (default prim; Y up; metersPerUnit 0.01 for cm, 1 for m)
      Skeleton                  joints root/neck/head/jaw/eye_L/eye_R, bind and rest transforms
      Animation                 SkelAnimation (only with an animation): blend shape weights, joint rotations
      LOD0, LOD1, ...           Mesh: points, smooth normals, st (face-varying), skin primvars, BlendShapes
      Materials/skin            UsdPreviewSurface (diffuse, roughness, normal maps; metallic 0)

Only LOD0 is visible; the other LODs are `invisible` meshes of the same asset (USD has no LOD schema that
every client reads). `usd_problems(path)` runs usd-core's validators (the framework `usdchecker` uses).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.geometry.asset import AssetMesh, HeadAsset, morph_normal_deltas, smooth_normals
from topos_cli.io.fs import atomic_path
from topos_cli.io.gltf import UNIT_SCALE, Animation, GltfHead, PbrMaps

USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
FPS = 60.0  # timeCodesPerSecond of written animations (Live Link Face records at 60)


def _pxr():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt
    except ImportError:
        raise UsageError("writing USD needs usd-core: pip install usd-core (or export .glb)") from None
    return Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt


def write_usd(path: str | Path, asset: HeadAsset, maps: PbrMaps | None = None, units: str = "m",
              animation: Animation | None = None) -> Path:
    """Write `asset` as USD; the suffix picks the flavour (.usda text, .usd/.usdc binary, .usdz package)."""
    path = Path(path)
    if path.suffix.lower() not in USD_SUFFIXES:
        raise UsageError(f"{path}: a USD file ends in one of {', '.join(USD_SUFFIXES)}")
    if units not in UNIT_SCALE:
        raise UsageError(f"--units must be one of {sorted(UNIT_SCALE)}, got {units!r}")
    with tempfile.TemporaryDirectory(prefix="topos-usd-") as tmp_dir:
        work = Path(tmp_dir)
        layer = work / (path.stem + (".usdc" if path.suffix.lower() in (".usdz", ".usd") else path.suffix.lower()))
        tex_dir = work / f"{path.stem}_textures"  # beside the layer, under the same relative name as in the file
        textures = _write_textures(tex_dir, maps)
        _build_stage(layer, asset, textures, UNIT_SCALE[units], animation)
        if path.suffix.lower() == ".usdz":
            from pxr import UsdUtils

            packed = work / (path.stem + ".usdz")
            if not UsdUtils.CreateNewUsdzPackage(str(layer), str(packed)):
                raise UsageError(f"{path}: usd-core could not package the USDZ")
            _publish(packed, path)
            return path
        _publish(layer, path)
        if textures:
            (path.parent / tex_dir.name).mkdir(parents=True, exist_ok=True)
            for tex in tex_dir.iterdir():
                _publish(tex, path.parent / tex_dir.name / tex.name)
    return path


def _publish(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _write_textures(folder: Path, maps: PbrMaps | None) -> dict[str, str]:
    """PNG files for the preview surface; returns {input: relative path}."""
    if maps is None:
        return {}
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, image in (("albedo", maps.albedo), ("normal", maps.normal), ("roughness", maps.roughness)):
        if image is not None:
            img = np.asarray(image, np.uint8)
            Image.fromarray(img[..., :3] if img.ndim == 3 else img).save(folder / f"{key}.png")
            out[key] = f"./{folder.name}/{key}.png"
    return out


def _build_stage(layer: Path, asset: HeadAsset, textures: dict[str, str], scale: float,
                 animation: Animation | None) -> None:
    _, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, _ = _pxr()
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 0.01 / scale)  # cm (scale 1) -> 0.01, m (scale 0.01) -> 1
    root_path = Sdf.Path("/" + _identifier(asset.name))
    root = UsdSkel.Root.Define(stage, root_path)
    stage.SetDefaultPrim(root.GetPrim())
    UsdGeom.ModelAPI.Apply(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    skel = _skeleton(stage, root_path, asset, scale) if asset.skeleton is not None else None
    material = _material(stage, root_path, textures)
    for k, lod in enumerate(asset.lods):
        mesh = _mesh(stage, root_path.AppendChild(f"LOD{k}"), lod, asset.morph_names, skel, scale)
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
        if k:
            mesh.CreateVisibilityAttr().Set(UsdGeom.Tokens.invisible)
    if asset.parts is not None:  # eyeballs, teeth, tongue, sockets: vertex colours through displayColor
        parts = _mesh(stage, root_path.AppendChild("EyesMouth"), asset.parts, asset.morph_names, skel, scale)
        UsdShade.MaterialBindingAPI.Apply(parts.GetPrim()).Bind(_parts_material(stage, root_path))
    if animation is not None:
        _animation(stage, root_path, asset, skel, animation, scale)
    stage.GetRootLayer().Save()


def _identifier(name: str) -> str:
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "head"
    return clean if not clean[0].isdigit() else "_" + clean


def _joint_paths(asset: HeadAsset) -> list[str]:
    sk = asset.skeleton
    paths: list[str] = []
    for j, name in enumerate(sk.names):
        parent = int(sk.parents[j])
        paths.append(name if parent < 0 else f"{paths[parent]}/{name}")
    return paths


def _skeleton(stage, root_path, asset: HeadAsset, scale: float):
    Gf, _, _, _, _, UsdSkel, Vt = _pxr()
    sk = asset.skeleton
    skel = UsdSkel.Skeleton.Define(stage, root_path.AppendChild("Skeleton"))
    pos = np.asarray(sk.positions, np.float64) * scale
    skel.CreateJointsAttr(Vt.TokenArray(_joint_paths(asset)))
    bind = [Gf.Matrix4d(1.0).SetTranslate(Gf.Vec3d(*map(float, p))) for p in pos]
    rest = [Gf.Matrix4d(1.0).SetTranslate(Gf.Vec3d(*map(float, p - (pos[int(par)] if par >= 0 else 0.0))))
            for p, par in zip(pos, sk.parents, strict=True)]
    skel.CreateBindTransformsAttr(Vt.Matrix4dArray(bind))
    skel.CreateRestTransformsAttr(Vt.Matrix4dArray(rest))
    UsdSkel.BindingAPI.Apply(stage.GetPrimAtPath(root_path))
    return skel


def _mesh(stage, path, lod: AssetMesh, morph_names: list[str], skel, scale: float):
    Gf, Sdf, _, UsdGeom, _, UsdSkel, Vt = _pxr()
    mesh = UsdGeom.Mesh.Define(stage, path)
    verts = np.asarray(lod.verts, np.float64) * scale
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(verts.astype(np.float32)))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(lod.faces), 3, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(lod.faces.reshape(-1).astype(np.int32)))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    normals = smooth_normals(lod.verts, lod.faces)
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(normals))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    lo, hi = verts.min(0), verts.max(0)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    if lod.uv is not None:
        st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                     UsdGeom.Tokens.faceVarying)
        st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(lod.uv, np.float32)))
        st.SetIndices(Vt.IntArray.FromNumpy(lod.uv_faces.reshape(-1).astype(np.int32)))
    if lod.colors is not None:
        color = mesh.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
        color.Set(Vt.Vec3fArray.FromNumpy(np.asarray(lod.colors, np.float32)))
    if skel is None:
        return mesh
    binding = UsdSkel.BindingAPI.Apply(mesh.GetPrim())
    binding.CreateSkeletonRel().SetTargets([skel.GetPath()])
    binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
    if lod.joints is not None:
        binding.CreateJointIndicesPrimvar(False, 4).Set(Vt.IntArray.FromNumpy(lod.joints.reshape(-1).astype(np.int32)))
        binding.CreateJointWeightsPrimvar(False, 4).Set(Vt.FloatArray.FromNumpy(lod.weights.reshape(-1).astype(np.float32)))
    if len(morph_names):
        _blend_shapes(stage, path, lod, morph_names, normals, binding, scale)
    return mesh


def _blend_shapes(stage, path, lod: AssetMesh, morph_names, normals, binding, scale: float) -> None:
    _, _, _, _, _, UsdSkel, Vt = _pxr()
    normal_deltas = morph_normal_deltas(lod.verts, lod.faces, lod.morphs, normals)
    targets = []
    for name, delta, ndelta in zip(morph_names, lod.morphs, normal_deltas, strict=True):
        shape = UsdSkel.BlendShape.Define(stage, path.AppendChild(_identifier(name)))
        rows = np.flatnonzero(np.abs(delta).max(1) > 0)
        if len(rows) == 0:
            rows = np.array([0])  # an empty target (tongueOut): one zero offset keeps it a valid shape
        shape.CreateOffsetsAttr(Vt.Vec3fArray.FromNumpy((delta[rows] * scale).astype(np.float32)))
        shape.CreateNormalOffsetsAttr(Vt.Vec3fArray.FromNumpy(ndelta[rows].astype(np.float32)))
        shape.CreatePointIndicesAttr(Vt.IntArray.FromNumpy(rows.astype(np.int32)))
        targets.append(shape.GetPath())
    binding.CreateBlendShapesAttr(Vt.TokenArray([_identifier(n) for n in morph_names]))
    binding.CreateBlendShapeTargetsRel().SetTargets(targets)


def _material(stage, root_path, textures: dict[str, str]):
    _, Sdf, _, _, UsdShade, _, _ = _pxr()
    mat_path = root_path.AppendChild("Materials").AppendChild("skin")
    material = UsdShade.Material.Define(stage, mat_path)
    surface = UsdShade.Shader.Define(stage, mat_path.AppendChild("PreviewSurface"))
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    surface.CreateInput("ior", Sdf.ValueTypeNames.Float).Set(1.4)  # skin; F0 = 0.028 as `topos textures` assumes
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    if not textures:
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set((0.80, 0.62, 0.52))
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.55)
        return material
    reader = UsdShade.Shader.Define(stage, mat_path.AppendChild("stReader"))
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    st_out = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    for key, (inp, out, kind) in {"albedo": ("diffuseColor", "rgb", Sdf.ValueTypeNames.Color3f),
                                  "roughness": ("roughness", "r", Sdf.ValueTypeNames.Float),
                                  "normal": ("normal", "rgb", Sdf.ValueTypeNames.Normal3f)}.items():
        if key not in textures:
            continue
        tex = UsdShade.Shader.Define(stage, mat_path.AppendChild(f"{key}Texture"))
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(textures[key])
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB" if key == "albedo" else "raw")
        if key == "normal":  # stored (n + 1) / 2
            tex.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set((2.0, 2.0, 2.0, 1.0))
            tex.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set((-1.0, -1.0, -1.0, 0.0))
        channel = tex.CreateOutput(out, Sdf.ValueTypeNames.Float3 if out == "rgb" else Sdf.ValueTypeNames.Float)
        surface.CreateInput(inp, kind).ConnectToSource(channel)
    return material


def _parts_material(stage, root_path):
    """UsdPreviewSurface whose diffuse colour is the parts' displayColor primvar."""
    _, Sdf, _, _, UsdShade, _, _ = _pxr()
    mat_path = root_path.AppendChild("Materials").AppendChild("eyes_mouth")
    material = UsdShade.Material.Define(stage, mat_path)
    surface = UsdShade.Shader.Define(stage, mat_path.AppendChild("PreviewSurface"))
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.3)
    reader = UsdShade.Shader.Define(stage, mat_path.AppendChild("colorReader"))
    reader.CreateIdAttr("UsdPrimvarReader_float3")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("displayColor")
    color = reader.CreateOutput("result", Sdf.ValueTypeNames.Float3)
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(color)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    return material


def _animation(stage, root_path, asset: HeadAsset, skel, anim: Animation, scale: float) -> None:
    Gf, _, _, _, _, UsdSkel, Vt = _pxr()
    if skel is None:
        raise UsageError("a USD animation needs a rig; export with --rig arkit")
    skel_anim = UsdSkel.Animation.Define(stage, root_path.AppendChild("Animation"))
    frames = np.rint(np.asarray(anim.times, np.float64) * FPS)
    stage.SetTimeCodesPerSecond(FPS)
    stage.SetStartTimeCode(float(frames[0]))
    stage.SetEndTimeCode(float(frames[-1]))
    joint_paths = _joint_paths(asset)
    names = list(anim.rotations)
    skel_anim.CreateJointsAttr(Vt.TokenArray([joint_paths[asset.skeleton.index(n)] for n in names]))
    pos = np.asarray(asset.skeleton.positions, np.float64)
    parents = asset.skeleton.parents
    ids = [asset.skeleton.index(n) for n in names]
    local = [pos[j] * scale - (pos[parents[j]] * scale if parents[j] >= 0 else 0.0) for j in ids]
    skel_anim.CreateBlendShapesAttr(Vt.TokenArray([_identifier(n) for n in asset.morph_names]))
    translations = Vt.Vec3fArray([Gf.Vec3f(*map(float, t)) for t in local])
    scales = Vt.Vec3hArray([Gf.Vec3h(1, 1, 1)] * len(names))
    weights_attr = skel_anim.CreateBlendShapeWeightsAttr()
    rotations_attr = skel_anim.CreateRotationsAttr()
    for i, frame in enumerate(frames):
        if anim.weights is not None:
            weights_attr.Set(Vt.FloatArray.FromNumpy(anim.weights[i].astype(np.float32)), float(frame))
        if names:
            quats = [Gf.Quatf(float(q[3]), float(q[0]), float(q[1]), float(q[2])) for q in
                     (anim.rotations[n][i] for n in names)]
            rotations_attr.Set(Vt.QuatfArray(quats), float(frame))
    if names:
        skel_anim.CreateTranslationsAttr().Set(translations)
        skel_anim.CreateScalesAttr().Set(scales)
    UsdSkel.BindingAPI(stage.GetPrimAtPath(root_path)).CreateAnimationSourceRel().SetTargets([skel_anim.GetPath()])


def usd_problems(path: str | Path) -> list[str]:
    """Errors and warnings of usd-core's validators (what `usdchecker` runs) on a USD/USDZ file."""
    from pxr import Usd, UsdValidation

    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    stage = Usd.Stage.Open(str(path))
    return [f"{e.GetName()}: {e.GetMessage()}" for e in context.Validate(stage)]


def read_usd_head(path: str | Path) -> GltfHead:
    """LOD0 of a topos USD file in template order and centimetres, with its blend shapes as dense deltas."""
    _, _, Usd, UsdGeom, _, UsdSkel, _ = _pxr()
    stage = Usd.Stage.Open(str(path))
    if stage is None or not stage.GetDefaultPrim():
        raise UsageError(f"{path}: not a USD file with a default prim")
    to_cm = UsdGeom.GetStageMetersPerUnit(stage) / 0.01
    mesh_prim = stage.GetDefaultPrim().GetChild("LOD0")
    if not mesh_prim:
        raise UsageError(f"{path}: no LOD0 mesh under the default prim (not written by topos export)")
    mesh = UsdGeom.Mesh(mesh_prim)
    verts = np.asarray(mesh.GetPointsAttr().Get(), np.float32) * to_cm
    faces = np.asarray(mesh.GetFaceVertexIndicesAttr().Get(), np.int64).reshape(-1, 3)
    binding = UsdSkel.BindingAPI(mesh_prim)
    names = [str(n) for n in (binding.GetBlendShapesAttr().Get() or [])]
    targets = binding.GetBlendShapeTargetsRel().GetTargets() if names else []
    morphs = np.zeros((len(names), len(verts), 3), np.float32)
    for k, target in enumerate(targets):
        shape = UsdSkel.BlendShape(stage.GetPrimAtPath(target))
        rows = np.asarray(shape.GetPointIndicesAttr().Get(), np.int64)
        morphs[k][rows] = np.asarray(shape.GetOffsetsAttr().Get(), np.float32) * to_cm
    lods = sum(1 for child in stage.GetDefaultPrim().GetChildren() if child.GetName().startswith("LOD"))
    return GltfHead(verts, faces, names, morphs, lods, {"units": "m" if to_cm == 100 else "cm"})
