"""The poll cycle, the fleet's states, and what a restart resumes from."""
