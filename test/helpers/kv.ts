import type { KvCache } from "../../src/llm/kv-cache.js";

/**
 * The filled slots of one entry of a cache's past [B,h,C,d] (a host cache has C >= P: the rest are free slots),
 * flattened in [B,h,P,d] order.
 */
export function filledSlots(cache: KvCache, name: string): number[] {
  const t = cache.feeds()[`past_key_values.${name}`];
  const [b, h, c, d] = t.dims.map(Number);
  const data = t.data as Float32Array;
  const out: number[] = [];
  for (let bh = 0; bh < b * h; bh++) out.push(...data.subarray(bh * c * d, (bh * c + cache.length) * d));
  return out;
}
