"""Compare two `ser-edge analyze` outputs (x86 vs arm64): same windows, same speech flags, same top-1,
scores within one int8 quantisation step of the output (1/256). One summary line; exit 1 on mismatch."""
import json
import sys

a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
step = 1 / 256 + 1e-4
problems = []
if len(a) != len(b):
    problems.append(f"{len(a)} vs {len(b)} windows")
worst = 0.0
for x, y in zip(a, b):
    if x["speech"] != y["speech"] or x["label"] != y["label"]:
        problems.append(f"window at {x['offset_s']} s: {x['label']} vs {y['label']}")
    if x["scores"] and y["scores"]:
        worst = max(worst, max(abs(x["scores"][k] - y["scores"][k]) for k in x["scores"]))
if worst > step:
    problems.append(f"scores differ by {worst:.4f} > one step")
speech = sum(1 for x in a if x["speech"])
status = "OK" if not problems else "MISMATCH: " + "; ".join(problems[:5])
print(f"arm64-check: {len(a)} windows ({speech} speech) from 4 files; identical top-1 and speech flags; "
      f"max score difference {worst:.4f} (one int8 step = {1/256:.4f}): {status}" if not problems else f"arm64-check: {status}")
sys.exit(1 if problems else 0)
