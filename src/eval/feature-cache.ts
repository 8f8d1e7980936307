// Image features on disk, computed once per image: keyed by the package (its manifest and visual encoder) and the
// image's content hash, so a demonstration shared by many queries, a resumed run, other shards on the same disk and
// later runs pay nothing more. Files are written to a temporary name and renamed: a killed run never leaves a torn
// entry.
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Emu2 } from "../emu2.js";
import type { Tensor } from "../model/tensor.js";
import type { ImageSource } from "../prompt/types.js";
import { ImageLoadError } from "../vision/image.js";

/** A short identity of a package's visual features: its manifest bytes and the visual encoder's size. */
export function packageFeatureKey(model: Emu2): string {
  const manifest = readFileSync(model.pkg.path("manifest.yaml"));
  const encoder = model.pkg.path(model.manifest.vision.file);
  const size = existsSync(encoder) ? statSync(encoder).size : 0;
  return createHash("sha256").update(manifest).update(`\u0000${size}`).digest("hex").slice(0, 16);
}

export function fileHash(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export interface FeatureStats {
  computed: number;
  fromDisk: number;
}

export class FeatureCache {
  readonly stats: FeatureStats = { computed: 0, fromDisk: 0 };
  private readonly hashes = new Map<string, string>();
  private readonly vectors = new Map<string, Float32Array>();
  private readonly packageDir: string | null;

  /** `dir` null keeps nothing on disk: every call computes (what a run without the cache costs). */
  constructor(
    private readonly model: Emu2,
    dir: string | null,
  ) {
    this.packageDir = dir === null ? null : join(dir, packageFeatureKey(model));
    if (this.packageDir) mkdirSync(this.packageDir, { recursive: true });
  }

  private hashOf(path: string): string {
    let h = this.hashes.get(path);
    if (h === undefined) {
      try {
        h = fileHash(path);
      } catch (err) {
        throw new ImageLoadError(
          path,
          `cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        );
      }
      this.hashes.set(path, h);
    }
    return h;
  }

  /** Features [1,Q,W] of one image file. */
  async features(path: string, nQuery: number): Promise<Tensor> {
    const width = this.model.manifest.vision.width;
    const dims = [1, nQuery, width];
    if (this.packageDir === null) {
      this.stats.computed++;
      return this.model.imageFeatures({ path }, nQuery);
    }
    const file = join(this.packageDir, `${this.hashOf(path)}-${nQuery}x${width}.f32`);
    if (existsSync(file)) {
      const bytes = readFileSync(file);
      if (bytes.length === nQuery * width * 4) {
        this.stats.fromDisk++;
        return { data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4).slice(), dims };
      }
    }
    const features = await this.model.imageFeatures({ path }, nQuery);
    this.stats.computed++;
    // Shards on other machines may share the cache: a unique temporary name, then an atomic rename.
    const tmp = `${file}.${hostname()}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    writeFileSync(tmp, Buffer.from(features.data.buffer, features.data.byteOffset, features.data.byteLength));
    renameSync(tmp, file);
    return features;
  }

  /** What the facade's prompt preparation calls for each image (PromptOptions.imageFeatures). */
  readonly source = (image: ImageSource, nQuery: number): Promise<Tensor> => {
    if (!("path" in image)) return this.model.imageFeatures(image, nQuery);
    return this.features(image.path, nQuery);
  };

  /** A vector computed before (by vector()), else undefined. */
  knownVector(path: string): Float32Array | undefined {
    return this.vectors.get(this.packageDir === null ? path : this.hashOf(path));
  }

  /**
   * The pooled image vector RICES compares: the mean of the Q pooled tokens, which equals average-pooling the
   * encoder's patch grid to a single token (equal-sized pooling windows).
   */
  async vector(path: string): Promise<Float32Array> {
    const key = this.packageDir === null ? path : this.hashOf(path);
    const known = this.vectors.get(key);
    if (known) return known;
    const f = await this.features(path, this.model.manifest.vision.n_query);
    const [, q, w] = f.dims;
    const v = new Float32Array(w);
    for (let t = 0; t < q; t++) for (let c = 0; c < w; c++) v[c] += f.data[t * w + c] / q;
    this.vectors.set(key, v);
    return v;
  }
}
