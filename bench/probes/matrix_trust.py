"""What the default matrix's metrics files say about trust: each reported number's interval width at
its split's size, the validation values beside the test ones, and calibration before and after.

    dvc repro && python bench/probes/matrix_trust.py
    # writes bench/results/matrix_trust.{json,md} and bench/results/calibration/<pair>.png
    # (the evaluate stage's reliability diagrams, copied)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text  # noqa: E402

PRIMARY = {"sentiment": "accuracy", "sarcasm": "accuracy", "ner": "f1", "qa": "f1"}


def main() -> None:
    out = REPO / "bench" / "results"
    (out / "calibration").mkdir(parents=True, exist_ok=True)
    rows, result = [], {"pairs": {}, "measured": provenance()}
    for path in sorted((REPO / "metrics").glob("*.json")):
        metrics = json.loads(path.read_text())
        pair, split = path.stem, metrics["split"]
        primary = PRIMARY.get(metrics["task"], "accuracy")
        test, validation = metrics[split], metrics.get("validation", {})
        low, high = test[f"{primary}_ci_low"], test[f"{primary}_ci_high"]
        entry = {"split": split, "units": test["ci"]["units"], "unit": test["ci"]["unit"], primary: test[primary],
                 "ci": [low, high], "width": high - low, "validation": validation.get(primary),
                 "validation_units": (validation.get("ci") or {}).get("units"), "calibration": test.get("calibration")}
        result["pairs"][pair] = entry
        reliability = REPO / "plots" / pair / "eval" / "reliability.png"
        if reliability.exists():
            shutil.copy2(reliability, out / "calibration" / f"{pair}.png")
        calibration = entry["calibration"]
        cal = (f"{calibration['temperature']:g} | " + " | ".join(
            f"{calibration['raw'][key]:.4f} → {calibration['calibrated'][key]:.4f}" for key in ("ece", "brier", "nll"))
               if calibration else "— | — (raw span scores) | — | —")
        rows.append(f"| `{pair}` | {split}: {entry['units']:,} {entry['unit']} | {primary} {test[primary]:.4f} "
                    f"[{low:.4f}, {high:.4f}] | ±{entry['width'] / 2:.4f} | {entry['validation']:.4f} "
                    f"({entry['validation_units']:,}) | {cal} |")
    (out / "matrix_trust.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "matrix_trust.md").write_text("\n".join([
        "# The default matrix: intervals, validation beside test, calibration", "",
        f"Read from `metrics/*.json` of the latest `dvc repro` by `python bench/probes/matrix_trust.py` on "
        f"{provenance_text(result['measured'])}. The interval is the evaluate stage's 95% bootstrap interval "
        "(1,000 resamples of the reported units); validation is the split that chose the checkpoint, the "
        "temperature and the registry's decision; ECE (15 bins), Brier and NLL are measured on the reported split "
        "with the raw probabilities → with the temperature fitted on validation.", "",
        "| pair | reported split | result [95% interval] | half width | validation (units) | T | ECE | Brier | NLL |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        "Reliability diagrams (raw left, calibrated right): "
        + ", ".join(f"[{p}](calibration/{p}.png)" for p in result["pairs"]
                    if (out / "calibration" / f"{p}.png").exists()),
        ""]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
