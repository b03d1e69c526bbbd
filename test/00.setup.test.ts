import { strict as assert } from "node:assert";
import { SDK_VERSION } from "@bpfhook/core";

describe("00 setup", () => {
  it("links the workspaces", () => {
    assert.equal(SDK_VERSION, "0.1.0");
  });
});
