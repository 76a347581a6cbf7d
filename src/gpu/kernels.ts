/**
 * Kernels: WGSL templates specialised into cached pipelines, and dispatches recorded once and
 * replayed every step. A dispatch holds its pipeline, its bind group (built once, tensors bound at
 * their offsets) and its workgroup counts; a step is a list of dispatches encoded in one compute
 * pass and submitted once.
 */
import { type Gpu, throwDeviceErrors } from "./device.ts";

/** Element types of tensors: 4-byte f32/u32 (the default) or 2-byte f16 (`shader-f16`). */
export type DType = "f32" | "u32" | "f16";

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: DType | undefined): number {
  return dtype === "f16" ? 2 : 4;
}

/** A view of `length` elements at a byte `offset` of a GPU buffer. */
export interface Tensor {
  buffer: GPUBuffer;
  /** Byte offset into `buffer`; a multiple of 256 (WebGPU's binding alignment). */
  offset: number;
  /** Number of elements. */
  length: number;
  /** Logical shape (product equals length). */
  shape: number[];
  /** Element type; absent means a 4-byte element (f32 or u32). */
  dtype?: DType;
}

/** Size of a tensor's elements in bytes. */
export function tensorBytes(t: Tensor): number {
  return t.length * dtypeBytes(t.dtype);
}

/** One recorded compute dispatch. */
export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
}

/** A uniform value: plain numbers are u32; wrap floats with `f32()`, signed with `i32()`. */
export type UniformValue = number | { f32: number } | { i32: number };
export const f32 = (v: number): UniformValue => ({ f32: v });
export const i32 = (v: number): UniformValue => ({ i32: v });

/** Fill `{{NAME}}` placeholders of a WGSL template. */
export function specialise(template: string, consts: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in consts)) throw new Error(`WGSL template constant {{${k}}} not given`);
    return String(consts[k]);
  });
}

export const BINDING_ALIGN = 256;
export const MAX_WG_PER_DIM = 65535;

/** Workgroup counts covering `total` workgroups with a 2D grid when it exceeds 65535. */
export function grid(total: number): [number, number, number] {
  if (total <= MAX_WG_PER_DIM) return [Math.max(1, total), 1, 1];
  const y = Math.ceil(total / MAX_WG_PER_DIM);
  return [Math.ceil(total / y), y, 1];
}

/** Pipeline cache, tensor allocation, dispatch recording, running and reading back. */
export class Kernels {
  readonly device: GPUDevice;
  private pipelines = new Map<string, GPUComputePipeline>();
  /** Bytes of the tensors allocated through `tensor()` (activations, scratch). */
  allocatedBytes = 0;

  constructor(readonly gpu: Gpu) {
    this.device = gpu.device;
  }

  /** A pipeline for `entry` of `code`, built once per distinct code and entry point. */
  pipeline(code: string, entry: string): GPUComputePipeline {
    const key = `${entry}\u0000${code}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code, label: entry });
      p = this.device.createComputePipeline({
        label: entry,
        layout: "auto",
        compute: { module, entryPoint: entry },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Number of distinct pipelines built so far. */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** A standalone tensor in its own buffer (storage, copyable); f16 needs `shader-f16`. */
  tensor(shape: number[], label = "tensor", dtype?: DType): Tensor {
    if (dtype === "f16" && !this.gpu.features.has("shader-f16")) {
      throw new Error(`${label}: f16 tensors need the adapter feature shader-f16, which it lacks`);
    }
    const length = shape.reduce((a, b) => a * b, 1);
    const size = Math.max(16, Math.ceil(length * dtypeBytes(dtype) / 16) * 16);
    this.allocatedBytes += size;
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    return dtype === "f16"
      ? { buffer, offset: 0, length, shape: [...shape], dtype }
      : { buffer, offset: 0, length, shape: [...shape] };
  }

  /** A uniform buffer holding `values` (4 bytes each), written once. */
  uniform(values: UniformValue[]): GPUBuffer {
    const n = Math.max(4, Math.ceil(values.length / 4) * 4);
    const data = new ArrayBuffer(n * 4);
    const u = new Uint32Array(data), f = new Float32Array(data), s = new Int32Array(data);
    values.forEach((v, i) => {
      if (typeof v === "number") {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
          throw new Error(`uniform ${i}: ${v} is not a u32 (wrap floats with f32())`);
        }
        u[i] = v;
      } else if ("f32" in v) f[i] = v.f32;
      else s[i] = v.i32;
    });
    const buffer = this.device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  }

  /**
   * Record a dispatch: binding i of group 0 is `bindings[i]` (a tensor or a uniform buffer).
   * Nothing runs until the dispatch is encoded with `encode` and submitted.
   */
  dispatch(
    code: string,
    entry: string,
    bindings: (Tensor | GPUBuffer)[],
    workgroups: [number, number, number] | number,
  ): Dispatch {
    const pipeline = this.pipeline(code, entry);
    const entries: GPUBindGroupEntry[] = bindings.map((b, binding) => {
      if (b instanceof GPUBuffer) return { binding, resource: { buffer: b } };
      if (b.offset % BINDING_ALIGN !== 0) {
        throw new Error(`${entry}: tensor offset ${b.offset} is not a multiple of 256`);
      }
      return {
        binding,
        // Whole 4-byte words (an odd count of f16 elements binds its padding half too).
        resource: {
          buffer: b.buffer,
          offset: b.offset,
          size: Math.max(16, Math.ceil(tensorBytes(b) / 4) * 4),
        },
      };
    });
    const bindGroup = this.device.createBindGroup({
      label: entry,
      layout: pipeline.getBindGroupLayout(0),
      entries,
    });
    const wg = typeof workgroups === "number" ? grid(workgroups) : workgroups;
    return { label: entry, pipeline, bindGroup, workgroups: wg };
  }

  /** Encode dispatches into one compute pass of `encoder`. */
  encode(
    encoder: GPUCommandEncoder,
    dispatches: Dispatch[],
    timestamps?: GPUComputePassTimestampWrites,
  ): void {
    const pass = encoder.beginComputePass(timestamps ? { timestampWrites: timestamps } : {});
    for (const d of dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
    }
    pass.end();
  }

  /** Encode and submit dispatches in one pass; does not wait. */
  submit(dispatches: Dispatch[]): void {
    const encoder = this.device.createCommandEncoder();
    this.encode(encoder, dispatches);
    this.device.queue.submit([encoder.finish()]);
  }

  /** Submit, wait for the GPU, and throw any device error. For tests and one-off work. */
  async run(dispatches: Dispatch[]): Promise<void> {
    this.submit(dispatches);
    await this.device.queue.onSubmittedWorkDone();
    throwDeviceErrors(this.gpu);
  }

  /**
   * Write `data` into a tensor: f32/u32/i32 arrays into 4-byte tensors; into an f16 tensor a
   * Float16Array, a Uint16Array of raw halves, or a Float32Array (rounded to nearest f16).
   */
  write(
    t: Tensor,
    data: Float32Array | Uint32Array | Int32Array | Float16Array | Uint16Array,
    elementOffset = 0,
  ): void {
    if (data.length + elementOffset > t.length) {
      throw new Error(`write of ${data.length} elements into a tensor of ${t.length}`);
    }
    const eb = dtypeBytes(t.dtype);
    if (eb === 2 && data instanceof Float32Array) data = new Float16Array(data);
    if (data.BYTES_PER_ELEMENT !== eb) {
      throw new Error(
        `write: ${data.BYTES_PER_ELEMENT}-byte elements into a ${t.dtype ?? "f32"} tensor`,
      );
    }
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const start = t.offset + elementOffset * eb;
    if (start % 4 !== 0 || bytes.length % 4 !== 0) {
      // WebGPU copies whole 4-byte words: an odd f16 count is padded, but only at the tensor's
      // end (its buffer is padded there), never over the element after a partial write.
      if (start % 4 !== 0 || data.length + elementOffset !== t.length) {
        throw new Error("write: f16 writes must start and end on an even element");
      }
      const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(
      t.buffer,
      start,
      bytes.buffer as ArrayBuffer,
      bytes.byteOffset,
      bytes.length,
    );
  }

  /** Fill a tensor with one value (NaN to poison outputs in tests); f16 tensors get it rounded. */
  fill(t: Tensor, value: number): void {
    this.write(t, new Float32Array(t.length).fill(value));
  }

  /** Copy a tensor back to the CPU as f32 (f16 tensors widened; waits for submitted work). */
  async read(t: Tensor): Promise<Float32Array> {
    const bytes = await this.readBytes(t);
    return t.dtype === "f16" ? Float32Array.from(new Float16Array(bytes)) : new Float32Array(bytes);
  }

  /** Copy a tensor back as u32. */
  async readU32(t: Tensor): Promise<Uint32Array> {
    return new Uint32Array(await this.readBytes(t));
  }

  private async readBytes(t: Tensor): Promise<ArrayBuffer> {
    const bytes = tensorBytes(t);
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(t.buffer, t.offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    throwDeviceErrors(this.gpu);
    return out;
  }
}
