"""Compare two `ser-edge analyze` outputs: same windows, same speech flags, same top-1, and scores
within a tolerance: one int8 output step (1/256) by default, for the same interpreter on two machines
(x86 vs arm64); different interpreters (tflite-runtime vs ai-edge-litert, whose int8 kernels round
differently) need a wider one. A window whose top-1 differs passes only as a near tie: in both outputs the
other's label scores within the tolerance of the top (int8 outputs tie exactly, and one step of rounding
decides). Such windows are counted in the summary line. One summary line; exit 1 on mismatch.

    python tools/compare_analyses.py A.jsonl B.jsonl [--name NAME] [--steps N]
"""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--name", default="arm64-check")
ap.add_argument("--steps", type=float, default=1.0)
args = ap.parse_args()
a = [json.loads(l) for l in open(args.a)]
b = [json.loads(l) for l in open(args.b)]
step = args.steps / 256 + 1e-4
problems = []
if len(a) != len(b):
    problems.append(f"{len(a)} vs {len(b)} windows")
worst = 0.0
ties = 0


def near_tie(x: dict, y: dict) -> bool:
    """Each output's runner-up is the other's top-1, within the tolerance of its own top score."""
    if not (x["scores"] and y["scores"]):
        return False
    return (x["scores"][y["label"]] >= x["scores"][x["label"]] - step
            and y["scores"][x["label"]] >= y["scores"][y["label"]] - step)


for x, y in zip(a, b):
    if x["label"] != y["label"] and x["speech"] == y["speech"] and near_tie(x, y):
        ties += 1
    elif x["speech"] != y["speech"] or x["label"] != y["label"]:
        problems.append(f"window at {x['offset_s']} s: {x['label']} vs {y['label']}")
    if x["scores"] and y["scores"]:
        worst = max(worst, max(abs(x["scores"][k] - y["scores"][k]) for k in x["scores"]))
if worst > step:
    problems.append(f"scores differ by {worst:.4f} > one step")
speech = sum(1 for x in a if x["speech"])
if problems:
    print(f"{args.name}: MISMATCH: " + "; ".join(problems[:5]))
else:
    same = "identical top-1" if not ties else f"identical top-1 but for {ties} near tie(s) within the tolerance"
    print(f"{args.name}: {len(a)} windows ({speech} speech); {same}, identical speech flags; max score difference "
          f"{worst:.4f} (allowed {args.steps:g} int8 step(s) = {args.steps / 256:.4f}): OK")
raise SystemExit(1 if problems else 0)
