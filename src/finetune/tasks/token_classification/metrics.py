"""NER metrics: seqeval entity-level scores on word-level tags, token accuracy, type confusion."""

from __future__ import annotations

from typing import Any


def token_classification_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """seqeval entity-level precision/recall/F1 (overall micro average and per type), token accuracy.

    Both arguments hold one IOB2 tag per *word* (never per sub-token: scoring sub-token sequences
    counts a split word's continuation pieces as extra entities, transformers #14043). Entities
    follow conlleval (seqeval's default mode): an `I-X` after `O` starts an entity. Also returns
    the word-level confusion of entity types (`O` included) for the confusion plot.
    """
    from seqeval.metrics import classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0) if words else {}
    overall = report.get("micro avg", {})
    per_type = {name: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                       "f1": float(row["f1-score"]), "support": int(row["support"])}
                for name, row in sorted(report.items()) if not name.endswith(" avg")}

    def word_type(tag: str) -> str:
        return "O" if tag == "O" or "-" not in tag else tag.split("-", 1)[1]

    gold_types = [word_type(t) for g in gold for t in g]
    pred_types = [word_type(t) for p in predicted for t in p]
    names = ["O"] + sorted((set(gold_types) | set(pred_types)) - {"O"})
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for g, p in zip(gold_types, pred_types, strict=True):
        matrix[index[g]][index[p]] += 1
    return {
        "precision": float(overall.get("precision", 0.0)),
        "recall": float(overall.get("recall", 0.0)),
        "f1": float(overall.get("f1-score", 0.0)),
        "accuracy": correct / words if words else 0.0,
        "per_type": per_type,
        "type_confusion": {"labels": names, "matrix": matrix},
        "n_sentences": len(gold),
        "n_words": words,
        "n_entities": len(get_entities(gold)) if words else 0,
    }
