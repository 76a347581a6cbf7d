/**
 * Patch embedding data movement: im2col of the stride-p patch convolution, the positional
 * embedding add, and DiT's unpatchify, with their backward permutations.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, shader } from "./common.ts";
import source from "../../shaders/patch.wgsl" with { type: "text" };

const code = shader(source);

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function imageDims(name: string, img: Tensor, p: number): [number, number, number, number] {
  if (img.shape.length !== 4) throw new Error(`${name}: image shape must be [B,C,H,W]`);
  const [B, C, H, W] = img.shape;
  if (!Number.isInteger(p) || p < 1 || H % p !== 0 || W % p !== 0) {
    throw new Error(`${name}: image ${H}x${W} is not divisible into ${p}x${p} patches`);
  }
  return [B, C, H, W];
}

function expect(name: string, t: Tensor, n: number, what: string): void {
  if (t.length !== n) throw new Error(`${name}: ${what} has ${t.length} elements, want ${n}`);
}

function move(
  k: Kernels,
  entry: string,
  src: Tensor,
  dst: Tensor,
  dims: [number, number, number, number],
  p: number,
): Dispatch[] {
  const n = dst.length;
  return [k.dispatch(code, entry, [k.uniform([n, ...dims, p]), src, dst], groupsFor(n))];
}

/**
 * cols [B*T, C·p·p] = im2col(img [B,C,H,W]): token t row-major over the (H/p, W/p) patches,
 * columns ordered (c, kh, kw) so cols·Wᵀ with the conv weight [D,C,p,p] viewed as [D, C·p·p]
 * is the stride-p Conv2d.
 */
export function im2colForward(k: Kernels, img: Tensor, cols: Tensor, p: number): Dispatch[] {
  const dims = imageDims("im2col", img, p);
  expect("im2col", cols, img.length, "cols");
  return move(k, "im2col_fwd", img, cols, dims, p);
}

/**
 * dimg [B,C,H,W] from dcols [B*T, C·p·p] (col2im; written, not accumulated). The image shape is
 * taken from `dimg.shape`. Not used by DiT (x is data); kept for the convolutional models.
 */
export function im2colBackward(k: Kernels, dcols: Tensor, dimg: Tensor, p: number): Dispatch[] {
  const dims = imageDims("im2col backward", dimg, p);
  expect("im2col backward", dcols, dimg.length, "dcols");
  return move(k, "im2col_bwd", dcols, dimg, dims, p);
}

/** h [B*T, D] += pos [T, D] (in place, broadcast over B). Its backward is the identity. */
export function addPosEmbedForward(k: Kernels, h: Tensor, pos: Tensor): Dispatch[] {
  const n = h.length, td = pos.length;
  if (td === 0 || n % td !== 0) {
    throw new Error(`addPosEmbed: h has ${n} elements, not a multiple of pos's ${td}`);
  }
  return [k.dispatch(code, "add_pos", [k.uniform([n, 0, td, 0, 0, 0]), pos, h], groupsFor(n))];
}

/**
 * img [B,C,H,W] = DiT unpatchify(o [B*T, p·p·C]): x.reshape(B, h, w, p, p, C),
 * einsum('nhwpqc->nchpwq'), reshape(B, C, h·p, w·p). B, H, W come from `img.shape`.
 */
export function unpatchifyForward(
  k: Kernels,
  o: Tensor,
  img: Tensor,
  p: number,
  C: number,
): Dispatch[] {
  const dims = imageDims("unpatchify", img, p);
  if (dims[1] !== C) throw new Error(`unpatchify: image has ${dims[1]} channels, C = ${C}`);
  expect("unpatchify", o, img.length, "o");
  return move(k, "unpatchify_fwd", o, img, dims, p);
}

/**
 * do [B*T, p·p·C] from dimg [B,C,H,W] (written, not accumulated). Shapes come from
 * `dimg.shape` [B,C,H,W] and `do_.shape` [B*T, p·p·C] (p = sqrt(cols / C)).
 */
export function unpatchifyBackward(k: Kernels, dimg: Tensor, do_: Tensor): Dispatch[] {
  if (dimg.shape.length !== 4 || do_.shape.length !== 2) {
    throw new Error("unpatchify backward: want dimg [B,C,H,W] and do [B*T, p*p*C]");
  }
  const C = dimg.shape[1];
  const p = Math.round(Math.sqrt(do_.shape[1] / C));
  if (p * p * C !== do_.shape[1]) {
    throw new Error(`unpatchify backward: ${do_.shape[1]} columns is not p*p*${C}`);
  }
  const dims = imageDims("unpatchify backward", dimg, p);
  expect("unpatchify backward", do_, size(dimg.shape), "do");
  return move(k, "unpatchify_bwd", dimg, do_, dims, p);
}
