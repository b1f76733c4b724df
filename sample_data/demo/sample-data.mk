# Included from the top-level Makefile: `make sample-data` regenerates sample_data/ from scratch
# (installs postgresql and redis-server with apt if missing, builds sample_data/demo/.venv,
# runs the instrumented demo). See sample_data/README.md.
.PHONY: sample-data
sample-data:
	sh sample_data/demo/sample-data.sh
