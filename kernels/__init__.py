"""speechlm_kernels: Triton ops, each beside a plain PyTorch reference (imports only torch/triton).

Installed under the import name ``speechlm_kernels`` (see pyproject.toml) because
``kernels`` is taken on PyPI by a Hugging Face package.
"""
