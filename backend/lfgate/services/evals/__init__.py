"""Deciding between models: side-by-side compares and their votes, the leaderboard, prompt-set
runs and their reference scores."""
