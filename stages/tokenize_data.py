"""Stage 2: subsample and tokenize every split once, save data/tokenized/<task>-<model>/."""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.tokenize import tokenize

    return tokenize(cfg)


if __name__ == "__main__":
    main()
