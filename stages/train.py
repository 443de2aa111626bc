"""Stage 3: fine-tune, keep the best checkpoint in models/<task>-<model>/, log to MLflow."""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.train import train

    return train(cfg)["best_metric"]  # the value a sweeper (e.g. Optuna) optimises


if __name__ == "__main__":
    main()
