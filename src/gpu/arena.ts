/**
 * Flat buffers: many named tensors laid out in one GPU buffer at aligned offsets. Parameters,
 * gradients, Adam moments and EMA weights share one layout, so an optimizer step is a single
 * dispatch over the whole buffer; an f16 copy of a layout (mixed precision's weights) has the same
 * element offsets at half the bytes.
 */
import type { Tensor } from "./kernels.ts";
import { BINDING_ALIGN, dtypeBytes } from "./kernels.ts";

/**
 * Slot alignment in elements: 128, so that every slot starts on WebGPU's 256-byte binding
 * alignment in a 2-byte (f16) copy of the layout as well as in the 4-byte one (512 bytes).
 */
export const SLOT_ALIGN = BINDING_ALIGN / 2;

/** A named tensor's place in a flat layout (offsets in elements). */
export interface Slot {
  name: string;
  shape: number[];
  /** Offset in elements; a multiple of SLOT_ALIGN (128). */
  offset: number;
  length: number;
}

/** An ordered list of named slots with aligned offsets; `total` elements in all (padded). */
export class Layout {
  readonly slots: Slot[] = [];
  /** Slot alignment in elements (offsets and `total` are multiples of it). */
  readonly align = SLOT_ALIGN;
  private byName = new Map<string, Slot>();
  total = 0;

  add(name: string, shape: number[]): Slot {
    if (this.byName.has(name)) throw new Error(`layout: duplicate tensor ${name}`);
    const length = shape.reduce((a, b) => a * b, 1);
    const slot = { name, shape: [...shape], offset: this.total, length };
    this.slots.push(slot);
    this.byName.set(name, slot);
    this.total += Math.ceil(length / this.align) * this.align;
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

  /** Where a slot's padded extent ends (the next slot's offset, or `total`). */
  end(slot: Slot | string): number {
    const s = typeof slot === "string" ? this.get(slot) : slot;
    return s.offset + Math.ceil(s.length / this.align) * this.align;
  }
}

/** A GPU buffer holding every slot of a layout, as f32 (default) or as f16 (`shader-f16`). */
export class FlatBuffer {
  readonly buffer: GPUBuffer;

  constructor(
    device: GPUDevice,
    readonly layout: Layout,
    label: string,
    readonly dtype: "f32" | "f16" = "f32",
  ) {
    if (dtype === "f16" && !device.features.has("shader-f16")) {
      throw new Error(`${label}: an f16 flat buffer needs the adapter feature shader-f16`);
    }
    this.buffer = device.createBuffer({
      label,
      size: Math.max(16, layout.total * dtypeBytes(dtype)),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  private tensor(offset: number, length: number, shape: number[]): Tensor {
    const t: Tensor = {
      buffer: this.buffer,
      offset: offset * dtypeBytes(this.dtype),
      length,
      shape,
    };
    if (this.dtype === "f16") t.dtype = "f16";
    return t;
  }

  /** The tensor view of one slot. */
  view(name: string): Tensor {
    const s = this.layout.get(name);
    return this.tensor(s.offset, s.length, s.shape);
  }

  /** Elements [start, end) of the buffer as one flat tensor (start a multiple of 128). */
  range(start: number, end: number = this.layout.total): Tensor {
    if (start % this.layout.align !== 0 || start < 0 || end > this.layout.total || end <= start) {
      throw new Error(`flat buffer range [${start}, ${end}) is not an aligned part of the layout`);
    }
    return this.tensor(start, end - start, [end - start]);
  }

  /** The whole buffer as one tensor (padding included). */
  all(): Tensor {
    return this.tensor(0, this.layout.total, [this.layout.total]);
  }
}
