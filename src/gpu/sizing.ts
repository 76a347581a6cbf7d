/**
 * A dry run of GPU allocation: a `Gpu` whose device records what would be created (every buffer's
 * size, label and usage, and the size of every storage binding of every bind group) and runs
 * nothing. Building a model, a graph or a trainer on it tells their memory before any real
 * allocation, also for configurations a real device would refuse (WebGPU reports no memory size,
 * only limits). Limits and features are a real device's, or given. Web-standard.
 */
import type { Gpu } from "./device.ts";

/** A buffer (or a binding of one) by its label and size in bytes. */
export interface Sized {
  label: string;
  bytes: number;
}

/** What a dry run created. */
export interface SizingRecord {
  buffers: Sized[];
  /** The largest storage binding of any bind group (the buffer's label). */
  largestBinding: Sized;
}

/** The limits a dry run checks against (a real device's `limits` has them). */
export interface MemoryLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** A Gpu that only records; `record` holds what it created. */
export interface SizingGpu extends Gpu {
  record: SizingRecord;
  limits: MemoryLimits;
}

interface FakeBuffer {
  size: number;
  label: string;
  usage: number;
}

/**
 * A recording Gpu like `like` (its features, adapter kind and limits; `limits` overrides the
 * memory limits, e.g. to size a configuration for another device).
 */
export function sizingGpu(like: Gpu, limits: Partial<MemoryLimits> = {}): SizingGpu {
  const real = like.device.limits;
  const lim: MemoryLimits = {
    maxBufferSize: limits.maxBufferSize ?? real.maxBufferSize,
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize ??
      real.maxStorageBufferBindingSize,
  };
  const record: SizingRecord = { buffers: [], largestBinding: { label: "", bytes: 0 } };
  const nothing = () => {};
  const pass = {
    setPipeline: nothing,
    setBindGroup: nothing,
    dispatchWorkgroups: nothing,
    end: nothing,
  };
  const device = {
    label: "sizing",
    features: like.device.features,
    limits: { ...limitsObject(real), ...lim },
    queue: {
      writeBuffer: nothing,
      submit: nothing,
      onSubmittedWorkDone: () => Promise.resolve(),
    },
    lost: new Promise(nothing),
    addEventListener: nothing,
    pushErrorScope: nothing,
    popErrorScope: () => Promise.resolve(null),
    createBuffer(d: GPUBufferDescriptor): GPUBuffer {
      const label = d.label ?? "";
      record.buffers.push({ label, bytes: d.size });
      // A GPUBuffer to `instanceof` (uniform bindings are told from tensors that way).
      return Object.create(GPUBuffer.prototype, {
        size: { value: d.size },
        label: { value: label },
        usage: { value: d.usage },
        destroy: { value: nothing },
      });
    },
    createShaderModule: () => ({}),
    createComputePipeline: () => ({ getBindGroupLayout: () => ({}) }),
    createBindGroup(d: GPUBindGroupDescriptor) {
      for (const e of d.entries as Iterable<GPUBindGroupEntry>) {
        const r = e.resource as GPUBufferBinding;
        const b = r.buffer as unknown as FakeBuffer | undefined;
        if (!b || !(b.usage & GPUBufferUsage.STORAGE)) continue;
        const bytes = r.size ?? b.size - (r.offset ?? 0);
        if (bytes > record.largestBinding.bytes) record.largestBinding = { label: b.label, bytes };
      }
      return {};
    },
    createCommandEncoder: () => ({
      copyBufferToBuffer: nothing,
      beginComputePass: () => pass,
      resolveQuerySet: nothing,
      finish: () => ({}),
    }),
    createQuerySet: () => ({ destroy: nothing }),
  };
  return {
    device: device as unknown as GPUDevice,
    name: `${like.name} (dry run)`,
    isFallback: like.isFallback,
    features: like.features,
    errors: [],
    record,
    limits: lim,
  };
}

/** A plain copy of a GPUSupportedLimits (its fields are getters on the prototype). */
function limitsObject(l: GPUSupportedLimits): Record<string, number> {
  const out: Record<string, number> = {};
  for (let p = l; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const key of Object.getOwnPropertyNames(p)) {
      const v = (l as unknown as Record<string, unknown>)[key];
      if (typeof v === "number" && !(key in out)) out[key] = v;
    }
  }
  return out;
}

/** The total bytes of the buffers a dry run created. */
export function totalBytes(r: SizingRecord): number {
  return r.buffers.reduce((a, b) => a + b.bytes, 0);
}

/** The largest buffer a dry run created. */
export function largestBuffer(r: SizingRecord): Sized {
  return r.buffers.reduce((a, b) => b.bytes > a.bytes ? b : a, { label: "", bytes: 0 });
}
