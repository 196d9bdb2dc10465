"""``python -m callguard`` is the ``callguard`` command."""

from callguard.cli import main

main(prog_name="callguard")
