"""Judging videos: Talking-Critic, proxy metrics, lip masks."""
