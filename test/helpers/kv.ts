import type { KvCache } from "../../src/llm/kv-cache.js";

/**
 * The filled slots of one entry of a cache's past [B,h,C,d] (a host cache has C >= P: the rest are free slots),
 * flattened in [B,h,P,d] order, rows as select() numbers them (feedOrder: batch row b holds row order[b]).
 */
export function filledSlots(cache: KvCache, name: string): number[] {
  const t = cache.feeds()[`past_key_values.${name}`];
  const [b, h, c, d] = t.dims.map(Number);
  const data = t.data as Float32Array;
  const order = cache.feedOrder();
  const out: number[] = [];
  for (let row = 0; row < b; row++) {
    const batchRow = order ? order.indexOf(row) : row;
    for (let head = 0; head < h; head++) {
      const at = (batchRow * h + head) * c * d;
      out.push(...data.subarray(at, at + cache.length * d));
    }
  }
  return out;
}

/** Rows [B, ...] (`size` values each) in select()'s order put into the cache's feed order, as the decoder gets them. */
export function inFeedOrder(cache: KvCache, values: number[], size: number): number[] {
  const order = cache.feedOrder();
  return order ? order.flatMap((row) => values.slice(row * size, (row + 1) * size)) : values;
}
