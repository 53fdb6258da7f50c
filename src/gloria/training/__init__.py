"""Training at scale on Lightning 2.x: experiment configs, objectives, gathered losses, modules, runner."""
