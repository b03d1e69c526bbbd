export * from "./compile.js";
export * from "./context.js";
export * from "./ctx-reads.js";
export * from "./helpers.js";
export * from "./insert.js";
export * from "./module.js";
export * from "./names.js";
export * from "./runtime.js";
