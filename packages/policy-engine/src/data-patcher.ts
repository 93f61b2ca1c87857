import { createRequire } from 'node:module';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';

// The package is CommonJS and Node's ESM interop does not see loadPolicySync among its named
// exports (it is declared as an object-literal method), so it is taken through require.
const { loadPolicySync } = createRequire(import.meta.url)(
  '@open-policy-agent/opa-wasm',
) as typeof import('@open-policy-agent/opa-wasm');

/** One change to data.directory: set `value` at `path`, or remove the path when value is undefined. */
export interface DirectoryChange {
  path: readonly string[];
  value?: unknown;
}

/** The parts of the SDK's LoadedPolicy (1.10) and the OPA Wasm ABI that in-place patching uses. */
interface PolicyInternals {
  wasmInstance: { exports: unknown };
  mem: { buffer: ArrayBufferLike };
  dataAddr: number;
  dataHeapPtr: number;
}

interface AbiExports {
  opa_malloc(size: number): number;
  opa_json_parse(addr: number, len: number): number;
  opa_heap_ptr_get(): number;
  opa_heap_ptr_set(addr: number): void;
  opa_value_add_path(base: number, path: number, value: number): number;
  opa_value_remove_path(base: number, path: number): number;
}

const encoder = new TextEncoder();

/**
 * Keeps the policy's data document (bundle data + data.directory) inside the Wasm instance.
 *
 * The SDK only offers setData, which re-serializes and re-parses the whole document: with 100,000
 * entitlements that costs tens of milliseconds per change. The OPA Wasm ABI exports
 * opa_value_add_path / opa_value_remove_path, so a change is applied in place: the new value is
 * parsed above the data on the heap and linked in, and the SDK's dataHeapPtr moves past it so
 * evaluations never overwrite it. Replaced values stay on the heap as garbage (the Wasm heap has
 * no collector), so once patches outgrow the last full load the document is loaded afresh.
 * If the instance lacks these exports, or a patch fails, the patcher falls back to a full load.
 */
export class DataPatcher {
  #policy: LoadedPolicy;
  readonly #wasm: Uint8Array;
  readonly #bundleData: Record<string, unknown>;
  #fullBytes = 0;
  #patchedBytes = 0;

  constructor(policy: LoadedPolicy, wasm: Uint8Array, bundleData: Record<string, unknown>) {
    this.#policy = policy;
    this.#wasm = wasm;
    this.#bundleData = bundleData;
  }

  /** The instance to evaluate; it changes only inside replace(), between two evaluations. */
  get policy(): LoadedPolicy {
    return this.#policy;
  }

  /**
   * Loads bundle data with this directory as the whole data document.
   *
   * OPA's allocator grows the Wasm memory a page (64 KiB) at a time as it parses, and every
   * growth of a large memory costs a copy: loading 10,000 agents with 100,000 grants took 14 s
   * that way, and 0.2 s in an instance created with enough memory up front (growing the memory
   * from outside does not help: the allocator does not see pages it did not grow itself). So
   * when the document outgrows the instance, a fresh instance of the same module is created with
   * room for it (parsed data takes about 17 times its JSON size) plus headroom for changes.
   */
  replace(directory: Record<string, unknown>): void {
    const text = JSON.stringify({ ...this.#bundleData, directory });
    const wantedPages = Math.ceil((text.length * 20 + 32 * 1024 * 1024) / 65536);
    const internals = this.#policy as unknown as PolicyInternals;
    const policy =
      internals.mem.buffer.byteLength / 65536 < wantedPages / 2
        ? loadPolicySync(this.#wasm, { initial: wantedPages })
        : this.#policy;
    policy.setData(encoder.encode(text).buffer as ArrayBuffer);
    this.#policy = policy;
    this.#fullBytes = text.length;
    this.#patchedBytes = 0;
  }

  /** Applies changes in place; `directory` is the already-updated JS mirror, used for a full load. */
  apply(changes: readonly DirectoryChange[], directory: Record<string, unknown>): void {
    const internals = this.#policy as unknown as PolicyInternals;
    const exports = internals.wasmInstance?.exports as unknown as AbiExports | undefined;
    if (!exports?.opa_value_add_path || !exports.opa_value_remove_path || !internals.dataAddr) {
      this.replace(directory);
      return;
    }
    try {
      this.#patch(exports, internals, changes);
    } catch {
      this.replace(directory);
      return;
    }
    if (this.#patchedBytes > Math.max(this.#fullBytes, 1 << 20)) this.replace(directory);
  }

  #patch(exports: AbiExports, internals: PolicyInternals, changes: readonly DirectoryChange[]): void {
    exports.opa_heap_ptr_set(internals.dataHeapPtr);
    for (const change of changes) {
      const path = this.#load(exports, internals, ['directory', ...change.path]);
      const status =
        change.value === undefined
          ? exports.opa_value_remove_path(internals.dataAddr, path)
          : exports.opa_value_add_path(
              internals.dataAddr,
              path,
              this.#load(exports, internals, change.value),
            );
      // Removing a path that is not there is fine; any other failure: reload everything.
      if (status !== 0 && change.value !== undefined) throw new Error(`opa_value_add_path failed: ${status}`);
    }
    internals.dataHeapPtr = exports.opa_heap_ptr_get();
  }

  #load(exports: AbiExports, internals: PolicyInternals, value: unknown): number {
    const bytes = encoder.encode(JSON.stringify(value));
    const raw = exports.opa_malloc(bytes.byteLength);
    new Uint8Array(internals.mem.buffer).set(bytes, raw);
    const parsed = exports.opa_json_parse(raw, bytes.byteLength);
    if (parsed === 0) throw new Error('the policy could not parse a directory change');
    this.#patchedBytes += bytes.byteLength;
    return parsed;
  }
}
