"""The run directory: its files, where a run starts, its history, its rate, its changes.

Nothing here imports Keras: a refusal about a run directory answers before the
framework loads.
"""
