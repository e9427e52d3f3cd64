"""Fine-tuning on the exact integer semantics (``snncc finetune``; docs/finetune.md).

- ``twin``: the torch module that reproduces the integer IR's forward pass (needs torch);
- ``train``: the training loop (Adam, cosine decay, optional distillation; needs torch);
- ``pinned``: the fine-tuned integers in and out of the ONNX metadata (numpy only);
- ``run``: the request, its checks, and fine-tuning a compiled result;
- ``command``: ``snncc finetune``: compile, fine-tune, write the tuned ONNX.

torch is the optional extra ``snncc[train]``: ``need_torch`` says so in one error line.
"""

from __future__ import annotations

from snncc.errors import SnnccError

INSTALL = "pip install -c .ci/constraints.txt -e '.[train]'"


def need_torch():
    """torch, or an SnnccError that names the extra to install."""
    try:
        import torch
    except ImportError:
        raise SnnccError(f"fine-tuning needs torch, which is not installed: {INSTALL} "
                         "(in the snncc checkout; the constraints pin torch's CPU build)") from None
    return torch
