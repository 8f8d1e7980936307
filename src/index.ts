// The library API: the same facade the CLI uses.
export { VERSION } from "./util/version.js";
export { Emu2 } from "./emu2.js";
export { trimAtStop } from "./llm/stop-strings.js";
export type {
  GeneratedImage,
  ImageGenerationOptions,
  PreparedPrompt,
  PromptOptions,
  TextOptions,
  TextResult,
} from "./emu2.js";
export { imageToPng } from "./emu2.js";
export type { GenerationSettings, StopReason } from "./llm/stage.js";
export { SettingsError } from "./llm/settings.js";
export { ModelPackage } from "./model/package.js";
export type { SessionOptions } from "./model/session.js";
export { readManifest, validateManifest, type Dtype, type Manifest } from "./model/manifest.js";
export type { Tensor } from "./model/tensor.js";
export { promptFromFile, parsePromptYaml, sequenceFromText } from "./prompt/parse.js";
export type { Conversation, Message, Part, PromptInput } from "./prompt/types.js";
export { Emu2Tokenizer } from "./tokenizer/tokenizer.js";
export { Emu2Error, PackageError, PromptError, UsageError } from "./util/errors.js";
