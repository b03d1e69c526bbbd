/**
 * Temporary folders for tests, removed when they are no longer needed, so a
 * run leaves nothing in the temporary directory (the root hooks,
 * root-hooks.ts, fail the run naming whatever is left).
 *
 * - testTempDir(prefix): inside a test body or a beforeEach hook; removed by
 *   the root afterEach hook when the test ends, passed or failed.
 * - runTempDir(prefix): a cache shared by the whole run (compiled fixtures,
 *   nvcc output); removed by the root afterAll hook before its leak check,
 *   and at exit as a safety net (a run stopped by an error).
 *
 * Folders a suite creates in its own `before` hook are removed by that
 * suite's `after` hook (`after(() => removeTempDir(dir))`).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const perTest = new Set<string>();
const perRun = new Set<string>();
let inTest = false;

/** Removes a folder (and what is in it); nothing if it is already gone. */
export function removeTempDir(dir: string | undefined): void {
  if (dir !== undefined && dir !== "") rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** A fresh folder under os.tmpdir(), removed when the current test ends. */
export function testTempDir(prefix: string): string {
  // A `before` hook runs outside a test: its folder would go after the
  // suite's first test while the others still use it.
  if (!inTest) throw new Error(`testTempDir("${prefix}") outside a test: use a before hook's own folder and remove it in after()`);
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  perTest.add(dir);
  return dir;
}

/** A fresh folder under os.tmpdir() for the whole run, removed at its end. */
export function runTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  perRun.add(dir);
  return dir;
}

/** Root hooks only: a test (with its beforeEach/afterEach hooks) starts. */
export function testStarted(): void {
  inTest = true;
}

/** Root hooks only: the test ended; its folders go. */
export function testEnded(): void {
  inTest = false;
  for (const dir of perTest) removeTempDir(dir);
  perTest.clear();
}

/** Root hooks only (and exit): the run's caches go. */
export function runEnded(): void {
  testEnded();
  for (const dir of perRun) removeTempDir(dir);
  perRun.clear();
}

process.once("exit", runEnded);
