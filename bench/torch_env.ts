// The environment the PyTorch peer runs in. Debian's python3-torch calls BLAS through libblas.so.3, which is the
// reference (netlib) BLAS unless an optimized one is installed: its matrix multiplies ran 3-5x slower here than
// OpenBLAS's on the same core, which would flatter emu2 in every comparison. The peer loads Debian's OpenBLAS
// (libopenblas0-openmp or -pthread) whenever it is installed, whatever the system's libblas.so.3 alternative is,
// and the probe reports which BLAS it got. Installing it also makes it the system's libblas.so.3, which the
// reference builds must not use (python/emu2ref/reference_blas.py): the warning says to set that back.
import { existsSync } from "node:fs";
import { join } from "node:path";

const MULTIARCH: Partial<Record<string, string>> = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" };

/** The folder of an installed OpenBLAS that provides libblas.so.3, OpenMP build first (torch's own threading). */
export function openBlasDir(): string | undefined {
  const triple = MULTIARCH[process.arch];
  if (!triple) return undefined;
  return ["openblas-openmp", "openblas-pthread"]
    .map((variant) => join("/usr/lib", triple, variant))
    .find((dir) => existsSync(join(dir, "libblas.so.3")));
}

export function torchEnv(): NodeJS.ProcessEnv {
  const dir = openBlasDir();
  if (!dir) return process.env;
  const rest = process.env.LD_LIBRARY_PATH;
  return { ...process.env, LD_LIBRARY_PATH: rest ? `${dir}:${rest}` : dir };
}

/** The line the benches print when the peer runs on the reference BLAS. */
export const NETLIB_WARNING =
  "PyTorch runs on the reference (netlib) BLAS: its matrix multiplies are several times slower than they can be; " +
  "`sudo apt-get install libopenblas0-openmp` gives it a fair BLAS (then set the system's libblas.so.3 back to " +
  "the reference one, which python/build_tiny_packages.py needs: the bench loads OpenBLAS for the peer itself)";
