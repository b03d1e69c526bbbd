/**
 * A project as npm would lay it out, with a third-party plugin installed in
 * its node_modules: made at test time under test/dist (so that resolution
 * still walks up to the workspace's node_modules for @bpfhook/* and zod),
 * from test/fixtures/third-party. Committing a node_modules folder would look
 * like a committed build output.
 */
import { cpSync, mkdirSync } from "node:fs";
import path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..", "..");
const fixtures = path.join(repoRoot, "test", "fixtures", "third-party");

/** Returns the app folder (holding package.json and node_modules/bpfhook-plugin-echo). */
export function makePluginApp(): string {
  const app = path.join(repoRoot, "test", "dist", "plugin-app");
  mkdirSync(path.join(app, "node_modules"), { recursive: true });
  cpSync(path.join(fixtures, "app-package.json"), path.join(app, "package.json"));
  cpSync(path.join(fixtures, "bpfhook-plugin-echo"), path.join(app, "node_modules", "bpfhook-plugin-echo"), {
    recursive: true,
  });
  return app;
}
