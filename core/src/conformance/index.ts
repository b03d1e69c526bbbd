/** The bpf_conformance runner (`npm run conformance -- <dir>`). */
export { parseDataFile, type ConformanceCase, type Section } from "./data-file.js";
export {
  CONFORMANCE_HELPERS,
  conformanceFiles,
  runConformance,
  runConformanceFile,
  type ConformanceOptions,
  type ConformanceOutcome,
  type ConformanceReport,
} from "./runner.js";
