/**
 * Flat buffers: many named tensors laid out in one GPU buffer at 256-byte aligned offsets
 * (WebGPU's binding alignment). Parameters, gradients, Adam moments and EMA weights share one
 * layout, so an optimizer step is a single dispatch over the whole buffer.
 */
import type { Tensor } from "./kernels.ts";
import { BINDING_ALIGN } from "./kernels.ts";

/** A named tensor's place in a flat layout (offsets in elements). */
export interface Slot {
  name: string;
  shape: number[];
  /** Offset in 4-byte elements; a multiple of 64 (256 bytes). */
  offset: number;
  length: number;
}

/** An ordered list of named slots with aligned offsets; `total` elements in all (padded). */
export class Layout {
  readonly slots: Slot[] = [];
  private byName = new Map<string, Slot>();
  total = 0;

  add(name: string, shape: number[]): Slot {
    if (this.byName.has(name)) throw new Error(`layout: duplicate tensor ${name}`);
    const length = shape.reduce((a, b) => a * b, 1);
    const slot = { name, shape: [...shape], offset: this.total, length };
    this.slots.push(slot);
    this.byName.set(name, slot);
    const align = BINDING_ALIGN / 4;
    this.total += Math.ceil(length / align) * align;
    return slot;
  }

  get(name: string): Slot {
    const s = this.byName.get(name);
    if (!s) throw new Error(`layout: no tensor named ${name}`);
    return s;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }
}

/** A GPU buffer holding every slot of a layout. */
export class FlatBuffer {
  readonly buffer: GPUBuffer;

  constructor(device: GPUDevice, readonly layout: Layout, label: string) {
    this.buffer = device.createBuffer({
      label,
      size: Math.max(16, layout.total * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  /** The tensor view of one slot. */
  view(name: string): Tensor {
    const s = this.layout.get(name);
    return { buffer: this.buffer, offset: s.offset * 4, length: s.length, shape: s.shape };
  }

  /** The whole buffer as one tensor (padding included). */
  all(): Tensor {
    return {
      buffer: this.buffer,
      offset: 0,
      length: this.layout.total,
      shape: [this.layout.total],
    };
  }
}
