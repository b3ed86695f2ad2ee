"""``python -m conchshell`` runs the command line."""

from conchshell.cli import main

raise SystemExit(main())
