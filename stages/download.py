"""Stage 1: read the task's data (files, mirror or Hub), split it, save data/raw/<task>/."""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.download import download

    return download(cfg)


if __name__ == "__main__":
    main()
