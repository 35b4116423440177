"""python -m core.report BASE_DIR [--out DIR]: see core/report/cli.py for the flags."""

from core.report.cli import main

main()
