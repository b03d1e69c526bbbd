export { SDK_VERSION } from "@bpfhook/sdk";
