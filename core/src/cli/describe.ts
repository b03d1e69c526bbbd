/**
 * What `bpfhook inspect` prints: an object's programs with the plugin and
 * attach type their section selects, and its maps.
 */
import "reflect-metadata";
import { container } from "tsyringe";
import type { BpfObject } from "../loader/index.js";
import { mapTypeName } from "../maps/types.js";
import { NodePluginLoader } from "../plugins/discovery.js";
import { PluginRegistry } from "../plugins/registry.js";

const BUNDLED = ["@bpfhook/plugin-simple", "@bpfhook/plugin-frida-uprobe"];

export interface Description {
  text: string;
  json: unknown;
}

export function describeObject(obj: BpfObject, pluginNames?: readonly string[]): Description {
  const registry = new PluginRegistry(new NodePluginLoader());
  const scope = container.createChildContainer();
  const notes: string[] = [];
  for (const name of pluginNames ?? BUNDLED) {
    try {
      registry.registerPackage(name, process.cwd(), scope);
    } catch {
      try {
        registry.registerPackage(name, __dirname, scope); // bundled next to core
      } catch (err) {
        notes.push(`plugin ${name} not loaded: ${(err as Error).message}`);
      }
    }
  }
  const programs = obj.programs.map((p) => {
    const match = registry.matchSection(p.section);
    return {
      name: p.name,
      section: p.section,
      instructions: p.insns.length / 8,
      attach: match ? `${match.type.name} (${match.type.id}) via ${match.plugin.name}` : "no plugin serves this section",
    };
  });
  const maps = obj.maps.map((m) => ({
    name: m.name,
    type: mapTypeName(m.type) ?? `type ${m.type}`,
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    flags: m.flags,
    section: m.section,
  }));
  const lines = [
    `${obj.file ?? "(buffer)"}: license "${obj.license}"`,
    `programs (${programs.length}):`,
    ...programs.map((p) => `  ${p.name.padEnd(24)} ${p.section.padEnd(44)} ${String(p.instructions).padStart(5)} insns  ${p.attach}`),
    `maps (${maps.length}):`,
    ...maps.map(
      (m) =>
        `  ${m.name.padEnd(24)} ${m.type.padEnd(16)} key ${String(m.keySize).padStart(3)}  value ${String(m.valueSize).padStart(5)}  entries ${m.maxEntries}`,
    ),
    ...notes,
  ];
  return { text: lines.join("\n"), json: { file: obj.file, license: obj.license, programs, maps } };
}
