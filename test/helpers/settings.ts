// Plain greedy decoding (one beam, no sampling, no penalties, no stop strings): the settings most tests start from,
// adding only the length they need.
export { PLAIN_GREEDY as GREEDY } from "../../src/llm/settings.js";
