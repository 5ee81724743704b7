"""The public API, one module per command (`api.py` re-exports them): validate inputs, run the work through
`pipelines`/`train`/`geometry`/`render`/`io`, return plain data. Never imports `cli`."""
