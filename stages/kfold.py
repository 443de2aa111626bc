"""k-fold cross-validation of one pair: every fold's download, tokenize, train and evaluate under
one MLflow parent run; the folds' mean ± sd, out-of-fold predictions and label issues in kfold/<pair>/.

    python stages/kfold.py task=sentiment data.split.folds=5 data.max_train_samples=2000
"""

from finetune.entry import stage


@stage
def main(cfg):
    from finetune.kfold import cross_validate

    return cross_validate(cfg)


if __name__ == "__main__":
    main()
