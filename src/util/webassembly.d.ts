// The part of the WebAssembly JS API the runtime uses (src/llm/scores.wat's module): Node has it as a global, but
// TypeScript declares it only in its DOM and web worker libraries, which would declare a browser besides.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    /** Adds `pages` pages of 64 KiB; the old buffer is detached. */
    grow(pages: number): number;
  }
}
