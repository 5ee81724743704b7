"""The expression prior of the default template (`template.json` -> `expression_prior`).

Part of scripts/build_default_template.py; plain data, no numpy. Read by topos_cli/geometry/expressions.py.

ICT's 53 ARKit-named blendshapes are deltas that were never meant to be combined at random: `mouthClose` is
a corrective for an open jaw (alone it lifts the lips into the nose), the left and right halves of a
symmetric shape move together in most faces, antagonists (blink/wide, smile/frown) do not co-occur, and the
lid closers add up. The prior encodes that as units drawn as one, exclusions, bounded sums and a dependent
shape; `checks` are the landmark gaps the augmentation rejects a head on. The numbers were measured on this
template (see the comments).
"""

from __future__ import annotations

PAIR_SUFFIXES = ("_L", "_R")
GAZE_MAX = 0.5              # eyeLook* move the lids only (the eyeballs are parts); past 0.5 the lids fold
ONE_SIDED = 0.15            # a pair drives one side only (a wink, a lopsided smile) this often
ASYMMETRY = 0.2             # otherwise each side gets w * U(1 - 0.2, 1)
SINGLE_MAX = {"jawLeft": 0.6, "jawRight": 0.6, "jawForward": 0.6}  # full ICT jaw slide dislocates the chin
MOUTH_CLOSE_FRACTION = 0.7  # mouthClose = jawOpen closes the lips with 0.5-0.85 cm overlap; 0.7 leaves them touching
MOUTH_CLOSE_PROBABILITY = 0.5
EXCLUSIVE = [["eyeBlink", "eyeWide"], ["eyeSquint", "eyeWide"], ["mouthSmile", "mouthFrown"],
             ["cheekPuff", "mouthFunnel"], ["cheekPuff", "mouthPucker"], ["jawLeft", "jawRight"],
             ["mouthLeft", "mouthRight"], ["gazeLeft", "gazeRight"], ["gazeUp", "gazeDown"],
             ["browDown", "browOuterUp"], ["mouthPress", "jawOpen"], ["mouthRollUpper", "mouthUpperUp"],
             ["mouthRollLower", "mouthLowerDown"]]
BOUNDED = [
    # lid closers: blink alone closes the lid to a 0.00-0.07 cm gap; squint, cheek squint and looking down
    # close it 0.2-0.5 cm more each, so together they would push the upper lid through the lower one
    {"units": ["eyeBlink", "eyeSquint", "cheekSquint", "gazeDown"], "max_sum": 1.0},
    # lower-lip raisers: mouthShrugLower alone overlaps the inner lip lines by 0.6 cm, roll/press add to it
    {"units": ["mouthShrugLower", "mouthRollLower", "mouthPress"], "max_sum": 1.0},
    # upper-lip raisers lift the lip towards the nose base (each 0.3-0.5 cm at full weight)
    {"units": ["mouthUpperUp", "noseSneer", "mouthFunnel", "mouthShrugUpper", "mouthPucker"], "max_sum": 1.5},
]
CHECKS = {
    "up": [8, 27],  # landmark chin -> nose bridge: the head's own up direction, so a posed base works too
    "gaps": [
        # rest: 1.64 cm; mouthClose alone: -0.81 cm (the lips in the nose)
        {"name": "mouth opening below the nose base", "upper": {"landmarks": [33]},
         "lower": {"boundary": "mouth"}, "min_cm": 0.3},
        # rest: 1.22 cm; ICT's strongest single lip raisers (mouthFunnel, mouthUpperUp) leave 0.73 cm
        {"name": "upper lip below the nose base", "upper": {"landmarks": [33]},
         "lower": {"landmarks": [50, 51, 52]}, "min_cm": 0.2},
        # inner lip lines 61-63 over 67-65: rest 0.08 cm, mouthShrugLower -0.61 cm (ICT's own shape),
        # mouthClose alone -3.8 cm
        {"name": "lips not crossed", "upper": {"landmarks": [61, 62, 63]}, "lower": {"landmarks": [67, 66, 65]},
         "pairwise": True, "min_cm": -0.8},
        # lids 37,38 over 41,40 (subject's right) and 43,44 over 47,46: rest 0.8 cm, eyeBlink 0.00-0.07 cm
        {"name": "right eyelids not crossed", "upper": {"landmarks": [37, 38]}, "lower": {"landmarks": [41, 40]},
         "pairwise": True, "min_cm": -0.1},
        {"name": "left eyelids not crossed", "upper": {"landmarks": [43, 44]}, "lower": {"landmarks": [47, 46]},
         "pairwise": True, "min_cm": -0.1},
    ],
}


def expression_prior(names: list[str]) -> dict:
    """The `expression_prior` block for a template whose expression basis has these ARKit/ICT names."""
    units, seen = [], set()
    gaze = {"gazeUp": ["eyeLookUp_L", "eyeLookUp_R"], "gazeDown": ["eyeLookDown_L", "eyeLookDown_R"],
            "gazeLeft": ["eyeLookOut_L", "eyeLookIn_R"], "gazeRight": ["eyeLookIn_L", "eyeLookOut_R"]}
    for unit, targets in gaze.items():  # both eyes turn one way: conjugate gaze, never one-sided
        if all(t in names for t in targets):
            units.append({"name": unit, "targets": targets, "max": GAZE_MAX, "one_sided": 0.0, "asymmetry": 0.1})
            seen.update(targets)
    for name in names:
        if name in seen or name == "mouthClose":
            continue
        stem = name[:-2] if name.endswith(PAIR_SUFFIXES) else name
        pair = [stem + s for s in PAIR_SUFFIXES]
        if name.endswith(PAIR_SUFFIXES) and all(p in names for p in pair):
            units.append({"name": stem, "targets": pair, "max": 1.0, "one_sided": ONE_SIDED,
                          "asymmetry": ASYMMETRY})
            seen.update(pair)
        else:
            units.append({"name": name, "targets": [name], "max": SINGLE_MAX.get(name, 1.0), "one_sided": 0.0,
                          "asymmetry": 0.0})
            seen.add(name)
    known = {u["name"] for u in units}
    return {
        "format": 1,
        "note": "expression units drawn as one (left/right pairs mostly together, conjugate gaze), exclusions, "
                "bounded sums, mouthClose only as a fraction of jawOpen; heads failing a landmark gap check are "
                "redrawn (scripts/head_expressions.py)",
        "units": units,
        "exclusive": [g for g in EXCLUSIVE if set(g) <= known],
        "bounded": [{"units": [u for u in b["units"] if u in known], "max_sum": b["max_sum"]} for b in BOUNDED],
        "dependent": ([{"name": "mouthClose", "of": "jawOpen", "probability": MOUTH_CLOSE_PROBABILITY,
                        "max_fraction": MOUTH_CLOSE_FRACTION}] if {"mouthClose", "jawOpen"} <= set(names) else []),
        "checks": CHECKS,
    }
