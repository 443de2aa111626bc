"""What the evaluate stage's bootstrap intervals cost on the largest reported splits: CoNLL-2003 test
(3,453 sentences) and the full SQuAD v1.1 dev set (10,570 questions), 1,000 resamples each.

    python bench/probes/interval_cost.py     # writes bench/results/interval_cost.{json,md}

The cost does not depend on how good the predictions are, so each split is scored against its own
gold (predictions = gold answers/tags): the per-unit statistics and the resamples are what is timed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text  # noqa: E402

RESAMPLES = 1000


def timed(family, examples, predictions) -> dict:  # noqa: ANN001
    from finetune.intervals import bootstrap

    start = time.perf_counter()
    resampled = family.resampled(examples, predictions)
    prepared = time.perf_counter() - start
    intervals = bootstrap(resampled, resamples=RESAMPLES, level=0.95, seed=0)
    total = time.perf_counter() - start
    return {"units": resampled.size, "unit": resampled.unit, "per_unit_s": round(prepared, 3),
            "resamples_s": round(total - prepared, 3), "total_s": round(total, 3),
            "f1_interval": [round(intervals["f1_ci_low"], 4), round(intervals["f1_ci_high"], 4)]}


def conll_test() -> dict:
    from datasets import Dataset

    from finetune.config import compose
    from finetune.tasks import recipe
    from finetune.tasks.token_classification.conll import read_conll

    cfg = compose(REPO, ["task=ner", "model=tiny"])
    family = recipe(cfg)
    sentences = read_conll(Path(cfg.data.dir) / cfg.data.mirror.test)
    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in ("B", "I")]
    family = family.with_labels(labels)
    index = {label: i for i, label in enumerate(labels)}
    examples = Dataset.from_list([{"id": str(i), "tokens": s.tokens, "tags": [index[t] for t in s.tags]}
                                  for i, s in enumerate(sentences)], features=family.features())
    predictions = [{"id": str(i), "tags": list(s.tags)} for i, s in enumerate(sentences)]
    return timed(family, examples, predictions)


def squad_dev() -> dict:
    from datasets import Dataset

    from finetune.config import compose
    from finetune.tasks import recipe
    from finetune.tasks.question_answering.squad import read_squad

    cfg = compose(REPO, ["task=qa", "model=tiny"])
    family = recipe(cfg)
    rows = read_squad(Path(cfg.data.dir) / cfg.data.mirror.validation, "squad")
    examples = Dataset.from_list([{k: v for k, v in row.items() if k != "_where"} for row in rows],
                                 features=family.features())
    predictions = [{"id": row["id"], "answer": row["answers"]["text"][0]} for row in rows]
    return timed(family, examples, predictions)


def main() -> None:
    result = {"conll_test": conll_test(), "squad_dev": squad_dev(), "resamples": RESAMPLES, "measured": provenance()}
    out = REPO / "bench" / "results"
    (out / "interval_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = [f"| {name} | {r['units']:,} {r['unit']} | {r['per_unit_s']} | {r['resamples_s']} | {r['total_s']} |"
            for name, r in (("CoNLL-2003 test", result["conll_test"]), ("SQuAD v1.1 dev", result["squad_dev"]))]
    (out / "interval_cost.md").write_text("\n".join([
        "# The cost of the evaluate stage's bootstrap intervals", "",
        f"Measured on {provenance_text(result['measured'])} by `python bench/probes/interval_cost.py`: "
        f"{RESAMPLES} resamples of the whole split, in the evaluate stage's own code "
        "(`Recipe.resampled`, then `finetune.intervals.bootstrap`).", "",
        "| split | units | per-unit statistics s | resamples s | total s |", "|---|---|---|---|---|", *rows, ""]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
