/**
 * Reads a config file (YAML, or JSON, which the YAML parser reads too) and
 * validates it with the zod schema. Every error names the file, the line and
 * column of the value (or, for an unknown key, of the key) and the field's
 * path ("objects[0].programs.on_add.attach.symbol"): the parser keeps each
 * node's source range, and zod's issue paths are walked through the document.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import { BpfhookError, type ErrorCode } from "../errors.js";
import { configSchema, type BpfhookConfig } from "./schema.js";

export type ConfigPath = readonly (string | number)[];

export interface ConfigPosition {
  line: number;
  column: number;
}

export class LoadedConfig {
  /** Absolute path of the file. */
  readonly file: string;
  /** Its directory: object paths and plugin names resolve from here. */
  readonly dir: string;

  constructor(
    file: string,
    readonly config: BpfhookConfig,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {
    this.file = path.resolve(file);
    this.dir = path.dirname(this.file);
  }

  /**
   * Where `at` is written: its value, or its key with `key`; a path the file
   * does not hold (a missing field) gives the nearest enclosing node.
   */
  position(at: ConfigPath, key = false): ConfigPosition {
    let node: unknown = this.doc.contents;
    let found: Node | undefined = isNode(node) ? node : undefined;
    for (const [i, seg] of at.entries()) {
      const last = i === at.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
        if (!pair) break;
        if (last && key && isNode(pair.key)) {
          found = pair.key;
          break;
        }
        node = pair.value;
      } else if (isSeq(node) && typeof seg === "number") {
        node = node.items[seg];
      } else {
        break;
      }
      if (!isNode(node)) break;
      found = node;
    }
    const offset = found?.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }

  /** "objects[0].programs.on_add" */
  static field(at: ConfigPath): string {
    return formatField(at);
  }

  /**
   * An error about field `at`: "file:line:col: field: message". The code is
   * CONFIG_INVALID unless `cause` is a BpfhookError with its own (an attach
   * that failed natively stays ATTACH_FAILED).
   */
  error(at: ConfigPath, message: string, cause?: unknown, key = false): BpfhookError {
    const { line, column } = this.position(at, key);
    const field = formatField(at);
    const code: ErrorCode = cause instanceof BpfhookError ? cause.code : "CONFIG_INVALID";
    return new BpfhookError(code, `${this.file}:${line}:${column}: ${field || "(file)"}: ${message}`, {
      file: this.file,
      line,
      column,
      field,
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

function isNode(v: unknown): v is Node {
  return typeof v === "object" && v !== null && "range" in v;
}

function formatField(at: ConfigPath): string {
  let out = "";
  for (const seg of at) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? seg : `.${seg}`;
  }
  return out;
}

/** Parses and validates `text` as the config file `file` (its name is only used in messages and for relative paths). */
export function parseConfig(text: string, file: string): LoadedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const abs = path.resolve(file);
  if (doc.errors.length > 0) {
    const msgs = doc.errors.map((e) => {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      return { line: pos.line, column: pos.col, text: `${abs}:${pos.line}:${pos.col}: ${e.message.split("\n")[0]}` };
    });
    throw new BpfhookError("CONFIG_INVALID", `invalid YAML/JSON:\n${msgs.map((m) => m.text).join("\n")}`, {
      file: abs,
      line: msgs[0]!.line,
      column: msgs[0]!.column,
    });
  }
  const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
  const result = configSchema.safeParse(value ?? {});
  const holder = new LoadedConfig(abs, result.success ? result.data : ({} as BpfhookConfig), doc, lines);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => {
      let at: ConfigPath = issue.path.filter((p): p is string | number => typeof p !== "symbol");
      let key = false;
      let message = issue.message;
      if (issue.code === "unrecognized_keys" && issue.keys.length > 0) {
        at = [...at, issue.keys[0]!];
        key = true;
        message = `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `'${k}'`).join(", ")}`;
      }
      return { at, key, message, pos: holder.position(at, key) };
    });
    const first = issues[0]!;
    const text = issues
      .map((i) => `${abs}:${i.pos.line}:${i.pos.column}: ${formatField(i.at) || "(file)"}: ${i.message}`)
      .join("\n");
    throw new BpfhookError("CONFIG_INVALID", issues.length === 1 ? text : `${issues.length} errors:\n${text}`, {
      file: abs,
      line: first.pos.line,
      column: first.pos.column,
      field: formatField(first.at),
    });
  }
  return holder;
}

/** Reads and validates a config file (.yaml, .yml or .json). */
export function loadConfigFile(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new BpfhookError("CONFIG_INVALID", `${file}: cannot read the config file: ${(err as Error).message}`, {
      file,
      cause: err,
    });
  }
  return parseConfig(text, file);
}
