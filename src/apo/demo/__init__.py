"""The offline demo: a warmed-up tiny VLM that learns the synthetic task with APO."""
