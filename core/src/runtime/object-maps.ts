/**
 * Creates an object's maps from their specs. Wired to the native maps in the
 * shared region (core/src/maps).
 */
import { BpfhookError } from "../errors.js";
import type { MapSpec } from "../loader/index.js";

export interface ObjectMap {
  readonly name: string;
  /** The native map handle programs reference. */
  readonly native: unknown;
  close(): void;
}

export function createObjectMaps(specs: readonly MapSpec[], objectName: string): ObjectMap[] {
  if (specs.length > 0) {
    throw new BpfhookError("MAP_ERROR", `${objectName}: maps are not wired into the runtime yet`);
  }
  return [];
}
