/**
 * The kernel's uprobe on the same function, counted by bpftrace: the anchor
 * the userspace figures are compared with. Needs root, bpftrace and tracefs;
 * returns a reason instead of a figure where the machine does not allow it.
 */
import { spawn, spawnSync } from "node:child_process";

export interface KernelProbe {
  /** Stops bpftrace and returns the hits it counted (null when it printed no count). */
  stop(): Promise<bigint | null>;
}

/** bpftrace prints "@hits: N" at exit; no line means the probe never fired. */
function parseHits(out: string): bigint | null {
  const m = /@hits:\s*(\d+)/.exec(out);
  return m ? BigInt(m[1]!) : null;
}

export function kernelUprobeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not root";
  const probe = spawnSync("bpftrace", ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) return "bpftrace not installed";
  return undefined;
}

/** Starts bpftrace counting hits of `symbol` in `library`; resolves once attached. */
export function startKernelUprobe(library: string, symbol: string): Promise<KernelProbe> {
  return new Promise((resolve, reject) => {
    const child = spawn("bpftrace", ["-e", `uprobe:${library}:${symbol} { @hits = count(); }`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bpftrace did not attach within 20 s: ${out}`));
    }, 20_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("Attaching")) {
        clearTimeout(timer);
        // "Attaching 1 probe..." is printed just before the attach completes.
        setTimeout(
          () =>
            resolve({
              stop: () =>
                new Promise<bigint | null>((done) => {
                  child.once("exit", () => done(parseHits(out)));
                  child.kill("SIGINT");
                }),
            }),
          1000,
        );
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (!out.includes("Attaching")) reject(new Error(`bpftrace exited with ${code}: ${out.trim()}`));
    });
  });
}
