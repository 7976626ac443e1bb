"""Leaderboard: aggregation of score rows, statistics, rendering and figures."""
