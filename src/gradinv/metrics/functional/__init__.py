"""Functional image and label metrics: pure functions over ``(N, C, H, W)`` batches in ``[0, 1]``.

One module per metric (``mse``, ``psnr``, ``ssim``, ``lpips``, ``stlpips``, ``matching``,
``labels``, ``iip``, ``leakage_rates``, ``rdlv``); their metadata and adapters are registered in
:mod:`gradinv.metrics.builtin`. The public functions are re-exported by
:mod:`gradinv.metrics`; this package deliberately does not re-export them, so that
``gradinv.metrics.functional.psnr`` stays the module and is not shadowed by the function.
"""
