/**
 * One attachment of one program by one plugin. Detaching is idempotent; the
 * runtime detaches every link still open when it closes.
 */
import type { AttachPlugin, AttachTypeSpec } from "@bpfhook/sdk";
import { BpfhookError } from "../errors.js";

export class Link {
  private open = true;

  constructor(
    /** The native runtime (embedded mode) or the agent area (agent mode). */
    private readonly native: { detach(id: number): number },
    /** The runtime's link id. */
    readonly id: number,
    readonly programName: string,
    readonly plugin: AttachPlugin,
    readonly type: AttachTypeSpec,
    /** The plugin's description of the attach point. */
    readonly description: string,
    private readonly onDetach: (link: Link) => void,
  ) {}

  get attached(): boolean {
    return this.open;
  }

  detach(): void {
    if (!this.open) return;
    this.open = false;
    this.onDetach(this);
    const rc = this.native.detach(this.id);
    if (rc < 0 && rc !== -2) {
      throw new BpfhookError("ATTACH_FAILED", `[${this.plugin.name}] prog '${this.programName}': detach failed (${rc})`, {
        errno: rc,
        plugin: this.plugin.name,
      });
    }
  }
}
