"""groundbench: does a vision model look where it should?

The flow is one direction (see DESIGN.md): manifest -> loader -> Sample stream -> model + method
-> maps -> metrics -> score rows -> leaderboard.
"""

__version__ = "0.1.0"
