"""All stages of one pair in order, in one process: the entrypoint for Hydra sweeps.

    python stages/pipeline.py -m model=tiny,minilm train.learning_rate=1e-5,3e-5 hydra/launcher=joblib
"""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.pipeline.chain import run_pipeline

    return run_pipeline(cfg)  # the best validation value of the primary metric, for a sweeper


if __name__ == "__main__":
    main()
