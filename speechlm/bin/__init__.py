"""Entry points: ``python -m speechlm.bin.<name>`` or ``speechlm <name>``.

Each module defines ``add_arguments(parser)``, ``run(args) -> int`` and ``main(argv=None)``;
its docstring's first line is the help shown by ``speechlm --help``.
"""
