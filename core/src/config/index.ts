/** Config files for the embedding API (and the CLI's `bpfhook run -c`): docs/CONFIG.md. */
export { configSchema, type BpfhookConfig, type ConfigObject, type ConfigOutput, type ConfigProgram } from "./schema.js";
export { loadConfigFile, parseConfig, LoadedConfig, type ConfigPath, type ConfigPosition } from "./load.js";
export { fromConfigFile, objectName, type ConfigOverrides, type ConfiguredRuntime } from "./apply.js";
