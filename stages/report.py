"""Compare every tracked run: leaderboards and plots under reports/, logged to a `report` run; or
two runs by a paired bootstrap on the same examples.

    python stages/report.py [experiment=NAME] [sweep=SWEEP_ID] [top=5] [out=reports] [ui=http://127.0.0.1:5000]
    python stages/report.py compare=RUN_A,RUN_B
"""

import sys

from finetune.entry import command
from finetune.report import as_list_override


@command
def main(cfg):
    from finetune.report import report

    return report(cfg)


if __name__ == "__main__":
    sys.argv[1:] = [as_list_override(arg, "compare") for arg in sys.argv[1:]]
    main()
