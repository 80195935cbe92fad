"""The benchmark suite behind `make bench` (`python -m bench`): training, in-process inference and HTTP."""
