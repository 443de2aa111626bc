"""Compare every tracked run: leaderboards and plots under reports/, logged to a `report` run.

    python stages/report.py [experiment=NAME] [sweep=SWEEP_ID] [top=5] [out=reports] [ui=http://127.0.0.1:5000]
"""

from finetune.entry import command


@command
def main(cfg):
    from finetune.report import report

    return report(cfg)


if __name__ == "__main__":
    main()
