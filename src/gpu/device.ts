/**
 * Adapter and device acquisition, with the limits a training run needs and clear errors.
 * Web-standard only (navigator.gpu), so it runs in Deno and in a browser.
 */

/** What was acquired: the device plus facts about the adapter behind it. */
export interface Gpu {
  device: GPUDevice;
  /** Adapter description, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)". */
  name: string;
  /** True on a software adapter (Mesa llvmpipe/lavapipe): tiny shapes only. */
  isFallback: boolean;
  /** Optional features that were enabled on the device. */
  features: Set<string>;
  /** Errors raised asynchronously by the device (validation, out of memory, loss). */
  errors: string[];
}

const FIX = "install a GPU driver with Vulkan, Metal or D3D12 support; on a Linux machine " +
  "with no GPU, install Mesa's software driver: apt-get install mesa-vulkan-drivers";

let cached: Promise<Gpu> | undefined;

/** The process-wide GPU (acquired once). */
export function getGpu(): Promise<Gpu> {
  cached ??= acquire();
  return cached;
}

/**
 * Deno on Linux: the Vulkan loader's Wayland probe prints "error: XDG_RUNTIME_DIR is invalid or not
 * set" twice to stderr when the variable is missing or not an absolute path (a root shell, a
 * container, a CI job). Point it at a private temporary directory (removed at exit) before the
 * adapter is requested. Does nothing in a browser, on other systems, or without env permission.
 */
function ensureRuntimeDir(): void {
  const deno = (globalThis as {
    Deno?: {
      build: { os: string };
      pid: number;
      env: { get(k: string): string | undefined; set(k: string, v: string): void };
      statSync(p: string): { isDirectory: boolean };
      makeTempDirSync(o: { prefix: string }): string;
      readDirSync(p: string): Iterable<{ name: string; isDirectory: boolean }>;
      removeSync(p: string, o?: { recursive: boolean }): void;
    };
  }).Deno;
  if (!deno || deno.build.os === "windows" || deno.build.os === "darwin") return;
  try {
    const cur = deno.env.get("XDG_RUNTIME_DIR");
    if (cur?.startsWith("/")) {
      try {
        if (deno.statSync(cur).isDirectory) return;
      } catch { /* missing: replace it */ }
    }
    const dir = deno.makeTempDirSync({ prefix: `flowgpu-xdg-${deno.pid}-` }); // mode 0700
    deno.env.set("XDG_RUNTIME_DIR", dir);
    globalThis.addEventListener?.("unload", () => {
      try {
        deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    });
    // Those of processes killed without an exit (kill -9): empty folders, removed when the
    // process that made them no longer exists (Linux: /proc/<pid>).
    const parent = dir.slice(0, dir.lastIndexOf("/"));
    for (const e of deno.build.os === "linux" ? deno.readDirSync(parent) : []) {
      const pid = e.isDirectory && e.name.match(/^flowgpu-xdg-(\d+)-/)?.[1];
      if (!pid || Number(pid) === deno.pid) continue;
      try {
        deno.statSync(`/proc/${pid}`);
      } catch {
        try {
          deno.removeSync(`${parent}/${e.name}`); // not recursive: only if still empty
        } catch { /* in use or not ours */ }
      }
    }
  } catch { /* no env or file permission: leave things as they are */ }
}

async function acquire(): Promise<Gpu> {
  ensureRuntimeDir();
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) throw new Error(`WebGPU is not available (no navigator.gpu): ${FIX}`);
  const adapter = await nav.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no WebGPU adapter found: ${FIX}`);
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const isFallback = Boolean(
    info.isFallbackAdapter ??
      (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
  const features = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: Math.min(l.maxStorageBuffersPerShaderStage, 10),
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    },
  });
  const name = info.description || [info.vendor, info.architecture, info.device].join(" ");
  const gpu: Gpu = { device, name, isFallback, features: new Set(features), errors: [] };
  device.addEventListener("uncapturederror", (e) => {
    const msg = (e as GPUUncapturedErrorEvent).error?.message ?? String(e);
    gpu.errors.push(msg.trim());
  });
  device.lost.then((i) => {
    if (i.reason !== "destroyed") gpu.errors.push(`GPU device lost: ${i.message}`);
  });
  return gpu;
}

/** Throw the first asynchronous device error seen since the last call, if any. */
export function throwDeviceErrors(gpu: Gpu): void {
  if (gpu.errors.length === 0) return;
  const first = gpu.errors[0];
  const n = gpu.errors.length;
  gpu.errors.length = 0;
  throw new Error(`WebGPU error${n > 1 ? ` (and ${n - 1} more)` : ""}: ${first}`);
}

/** One line describing the adapter, for logs. */
export function describeGpu(gpu: Gpu): string {
  return `${gpu.name}${gpu.isFallback ? " (software fallback adapter: slow)" : ""}`;
}
