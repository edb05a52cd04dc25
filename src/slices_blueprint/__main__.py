"""``python -m slices_blueprint``: the ``slices-blueprint`` command."""

from slices_blueprint.cli.main import main

main()
