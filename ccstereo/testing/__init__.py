"""``ccstereo.testing``: what the tests and benchmarks share — hostile inputs made with the ffmpeg CLI
(``hostile``), the mutation fuzzer of ccs-run (``fuzz``), media made with PyAV (``media``) and the benchmark
helpers (``bench``). Not needed at run time."""
