"""The parts of `argsfw.predict`: settings and labels, start-up checks, the run's summary."""
