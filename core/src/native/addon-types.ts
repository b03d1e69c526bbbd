/**
 * What the raw addon exports. Each native binding file (core/native/addon/*.cpp)
 * has its section here; the friendly API sits on top in the component folders.
 */
export interface NativeAddon {
  setErrorClass(cls: Function): void;
}
