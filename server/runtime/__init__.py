"""Where calls run: worker processes (`pool`, `worker`), Dask (`dask_executor`), the
dynamic batcher and its batch solve, chunked solves and the killable thread."""
