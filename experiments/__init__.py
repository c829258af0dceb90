"""Experiment drivers: each module has ``run(config, workdir)``; the ConfigDict stops here."""
