"""The Triton side: the models' tensor contract, the one client of the ensemble,
and what runs inside the Python-backend stubs (tensor I/O, the vLLM model's
generation, cancellation bookkeeping, metrics).

`contract`, `client`, `errors` and `inflight` import anywhere; `tensors` and
`metrics` only inside a stub (they need `triton_python_backend_utils`), and
`generation` where vLLM is installed.
"""
