"""Which BLAS PyTorch calls. Debian's python3-torch multiplies matrices through libblas.so.3, the system's BLAS
alternative: the reference (netlib) BLAS unless an optimized one (OpenBLAS, BLIS, MKL) was installed, which takes the
alternative over. The committed tiny packages and their goldens were computed on the reference BLAS; another sums in
another order, so a rebuild differs from them, and a near tie in the goldens' beam search can turn (the builder's
batch-against-alone check then fails: measured with libopenblas0-openmp installed)."""
import os

REFERENCE_BLAS_DIR = "blas"


def loaded_blas() -> list:
    """The libblas.so.3 files this process has mapped (after torch is imported and has run a product), resolved."""
    import torch

    torch.ones(2, 2) @ torch.ones(2, 2)
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libblas.so" in line}
    except OSError:
        return []
    return sorted(os.path.realpath(p) for p in paths)


def require_reference_blas(tool: str) -> None:
    """Exits with one line naming the BLAS and the fix unless PyTorch calls the reference BLAS (or it cannot tell)."""
    other = [p for p in loaded_blas() if os.path.basename(os.path.dirname(p)) != REFERENCE_BLAS_DIR]
    if other:
        lib_dir = os.path.dirname(os.path.dirname(other[0]))  # /usr/lib/<multiarch triple>
        raise SystemExit(
            f"{tool}: PyTorch calls {other[0]}, but the committed packages and goldens are computed on the reference "
            "BLAS and another one changes them; switch the system's libblas.so.3 back with `sudo update-alternatives "
            f"--set libblas.so.3-{os.path.basename(lib_dir)} {lib_dir}/{REFERENCE_BLAS_DIR}/libblas.so.3` (the "
            "benches still load OpenBLAS for the PyTorch peer)")
