"""Triton plumbing, model-agnostic: run local servers, read their health, talk to their models.

Modules, in the order a request meets them:

* ``environment``: the server's own virtualenv and the fixes for the four traps below;
* ``process``: start, watch, reuse and stop local tritonserver processes (pid files, ports, logs);
* ``logs``: follow a server's log and say why a start failed;
* ``health``: Triton's HTTP API (ready, live, metadata, model index, statistics, /metrics);
* ``client``: one model's inference over one or more endpoints (tritonclient), with clear errors;
* ``load_test``: a bounded loopback load test of one model (the Ops page);
* ``errors``: every error the above raise on purpose.

The server is the real `tritonserver` 2.51 binary that ships inside the PyPI wheel `nvidia-pytriton==0.7.0`, run
straight from the server's own virtualenv (`Settings.triton_env`, built by `make triton-env`). That wheel is the only
Triton that runs on our CPU machines (docs/platform.md). It bundles the python backend but no onnxruntime, pytorch or
tensorrt backend, so our CPU models are python-backend `model.py` files that call ONNX Runtime.

Running the binary outside PyTriton has four traps; facecast.serving.environment applies the fixes every time it
starts a server:

1. **The python backend cannot find its stub.** `libtriton_python.so` looks for `triton_python_backend_stub` next
   to itself in `backends/python/`, but the wheel ships the stubs per Python version under
   `python_backend_stubs/<X.Y>/`. Without a copy every model fails with "triton_python_backend_stub is not found".
   We copy the stub matching the server env's Python version (PyTriton does the same in its workspace).
2. **The stub loads the wrong libpython.** It links `libpython3.X.so` by name; the dynamic loader finds Debian's
   system libpython (3.11.2) while the stdlib comes from pyenv's 3.11.7, and the stub dies with
   `'_thread.RLock' object has no attribute '_recursion_count'`. We put that Python's `LIBDIR` first on
   `LD_LIBRARY_PATH`.
3. **The stub picks its Python by PATH.** It ignores the caller's interpreter and takes the first `python3` on
   PATH to find its site-packages, so the server env's `bin/` must come first on PATH (and we drop PYTHONPATH /
   PYTHONHOME so the app's packages cannot leak in).
4. **numpy 2 in the stub's environment gives empty outputs** (`cannot reshape array of size 0`). That is why the
   server has its own environment with numpy<2 while the app uses numpy 2; we refuse to start on a numpy-2 server
   env instead of serving empty tensors.

Everything but ``client`` and ``load_test`` is stdlib only (urllib for HTTP): the runtime never imports torch, and
checking health needs no tritonclient.
"""
