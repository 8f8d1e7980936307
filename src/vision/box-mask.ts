// The object mask of Emu2-Gen grounded generation, drawn as the official example does (Emu2/README.md, draw_box):
// a black 448x448 RGB canvas, cv2.rectangle(mask, (left, top), (right, bottom), white, thickness=3).
//
// OpenCV draws a thickness-3 rectangle as four thick lines with round caps: each edge covers the pixels within 2 of
// its line (thickness 3 widens by (3 + 1) / 2 = 2 on each side in OpenCV's fixed point) between its end points,
// and each corner adds a filled disc of radius 2 (the 13 pixels with dx^2 + dy^2 <= 4). So the band is 5 pixels
// wide, the outer corners are rounded and the inner corners square; everything is clipped to the canvas.
import type { RgbImage } from "./image.js";

export const BOX_MASK_SIZE = 448;
const HALF_WIDTH = 2;

/** box = [left, top, right, bottom] in integer pixels of the size x size canvas (corners may be given in any order). */
export function drawBoxMask(box: readonly [number, number, number, number], size = BOX_MASK_SIZE): RgbImage {
  if (!box.every((v) => Number.isInteger(v)))
    throw new RangeError(`box [${box.join(", ")}] must be integer pixel coordinates`);
  const [x1, y1, x2, y2] = box;
  const left = Math.min(x1, x2),
    right = Math.max(x1, x2),
    top = Math.min(y1, y2),
    bottom = Math.max(y1, y2);
  const mask = new Uint8Array(size); // one byte per pixel of a row, reused per row
  const data = new Uint8Array(size * size * 3);
  const mark = (from: number, to: number) => {
    for (let x = Math.max(from, 0); x <= Math.min(to, size - 1); x++) mask[x] = 1;
  };
  for (let y = 0; y < size; y++) {
    mask.fill(0);
    // Horizontal edges (top, bottom) between the corners.
    if (Math.abs(y - top) <= HALF_WIDTH || Math.abs(y - bottom) <= HALF_WIDTH) mark(left, right);
    // Vertical edges (left, right) between the corners.
    if (y >= top && y <= bottom) {
      mark(left - HALF_WIDTH, left + HALF_WIDTH);
      mark(right - HALF_WIDTH, right + HALF_WIDTH);
    }
    // Round caps at the four corners.
    for (const cy of [top, bottom]) {
      const dy = y - cy;
      if (Math.abs(dy) > HALF_WIDTH) continue;
      const reach = Math.floor(Math.sqrt(HALF_WIDTH * HALF_WIDTH - dy * dy));
      for (const cx of [left, right]) mark(cx - reach, cx + reach);
    }
    const row = y * size * 3;
    for (let x = 0; x < size; x++) {
      if (mask[x]) data.fill(255, row + x * 3, row + x * 3 + 3);
    }
  }
  return { width: size, height: size, data };
}
