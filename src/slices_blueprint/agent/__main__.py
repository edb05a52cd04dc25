"""``python -m slices_blueprint.agent``: run the agent with settings from the environment."""

from slices_blueprint.agent.cli import run_agent

run_agent()
