"""Learning-rate schedules as pure functions of the epoch (0-based)."""


def polynomial_decay(epoch: int, *, initial_rate: float, total_epochs: int, power: float = 1.0):
    """initial_rate * (1 - epoch / total_epochs) ** power; power 1 is a linear decay to 0."""
    remaining = max(0.0, 1.0 - epoch / total_epochs)
    return initial_rate * remaining**power
