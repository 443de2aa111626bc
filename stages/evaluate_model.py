"""Stage 4: score the model on data.eval_split: metrics/<task>-<model>.json, predictions, plots."""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.evaluate import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    main()
