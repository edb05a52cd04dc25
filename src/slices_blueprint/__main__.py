from slices_blueprint.cli.main import app

app()
