export * from "./errors.js";
export * from "./container.js";
export * from "./lz.js";
export * from "./elf.js";
