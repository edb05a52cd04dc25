"""MicroVM provider (flavor type ``microvm``): ``driver.py`` adapts the service to host agents
speaking :mod:`slices_blueprint.agent.protocol`."""
