"""Stage 5: a self-contained model + tokenizer + model card in exports/<task>-<model>/."""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.export import export

    return export(cfg)


if __name__ == "__main__":
    main()
