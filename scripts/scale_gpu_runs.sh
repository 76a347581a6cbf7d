#!/bin/sh
# The GPU measurements of issue 13 ("Scaling up"), not yet run: each part is one call of at most
# ~10 minutes on an H200 (estimates from an f16 S/2 step of ~106 ms, f32 ~127-153 ms, B/2 32×32
# f16 ~450 ms, f32 ~620 ms).
#   sh scripts/scale_gpu_runs.sh PART      PART: memory | ckpt-s | ckpt-b | refused | fit-micro |
#                                          fit-ckpt | refused-small | fit-small | muon-adamw |
#                                          muon-muon | muon-report
# FMNIST=DIR uses the full Fashion-MNIST in DIR (else Debian's, else the embedded subset).
set -eu
DATA="--dataset fashion-mnist ${FMNIST:+--data $FMNIST}"
STEP="--skip sample,linear,breakdown --repeats 3 --precision f32,f16"
B64="--preset B $DATA --image-size 64 --batch-size 256 --precision f32 --lr 1e-4 --warmup 50"
B64="$B64 --log-every 10 --sample-every 200 --ckpt-every 50"
# A cheaper refused configuration: small/2 at 64×64, batch 640, f32 needs 75.5 GiB (dry run) and
# one 2.5 GiB activation binding, past the 2 GiB that Deno's WebGPU allows a storage binding on the
# H200, so the device refuses it whatever its allocator does; 2 micro-batches of 320 need 37.9 GiB
# and 1.25 GiB bindings. Ran on 2026-11-30: refused in seconds, then 190 steps in 255 s (1.44 s a
# step; README "Scaling up"). (Batch 1280 in micro-batches of 640, planned first, is refused too.)
S64="--preset small $DATA --image-size 64 --batch-size 640 --precision f32 --lr 3e-4 --warmup 50"
S64="$S64 --log-every 10 --sample-every 200 --ckpt-every 50"
MUON="--preset S $DATA --batch-size 128 --steps 1500 --lr 3e-4 --warmup 200 --ema-decay 0.999"
MUON="$MUON --log-every 100 --sample-every 1500 --ckpt-every 0 --precision f16 --seed 0"

case "${1:-}" in
# What each configuration needs (dry runs, seconds), against the H200's limits.
memory)
  deno task bench --memory --preset S --image-size 28 --batch-size 128 --precision f32,f16
  deno task bench --memory --preset B --image-size 32 --channels 3 --batch-size 128 --precision f32,f16
  deno task bench --memory --preset B --image-size 64 --batch-size 256 --precision f32,f16
  deno task bench --memory --preset B --image-size 64 --batch-size 256 --precision f32 --micro-batch-size 64
  ;;
# Activation checkpointing: step time and memory with and without (target: activations cut ≥ 3×
# for ≤ 40% more step time, S/2 batch 128). ~4 min each.
ckpt-s)
  deno task bench --preset S --image-size 28 --batch-size 128 $STEP
  deno task bench --preset S --image-size 28 --batch-size 128 $STEP --grad-checkpointing
  ;;
ckpt-b)
  deno task bench --preset B --image-size 32 --channels 3 --batch-size 128 $STEP
  deno task bench --preset B --image-size 32 --channels 3 --batch-size 128 $STEP --grad-checkpointing
  ;;
# B/2 at 64×64 (1,024 tokens), batch 256, f32: ~174 GiB of buffers (a dry run's figure), past the
# H200's ~139 GiB: expected to stop within a minute with the one-line out-of-memory error
# (should the device take it after all, --time-limit ends the run after 2 minutes of steps).
refused)
  deno task train $B64 --steps 200 --time-limit 120 --name b64-plain || echo "exit code $?"
  ;;
# The same run with the flags that fit: 4 micro-batches of 64 (~45 GiB), or checkpointing (~33
# GiB). ~5-7 s a step: 200 steps take 2-3 calls; repeat the same command (it resumes the run).
fit-micro)
  if [ -d runs/b64-micro/checkpoints ]; then R="--resume runs/b64-micro"; else R="--name b64-micro"; fi
  deno task train $B64 --steps 200 --micro-batch-size 64 --time-limit 540 $R
  ;;
refused-small)
  deno task train $S64 --steps 200 --time-limit 30 --name s64b640-plain || echo "exit code $?"
  ;;
fit-small)
  if [ -d runs/s64b640-micro/checkpoints ]; then R="--resume runs/s64b640-micro"
  else R="--name s64b640-micro"; fi
  deno task train $S64 --steps 200 --micro-batch-size 320 --time-limit 255 $R
  ;;
fit-ckpt)
  if [ -d runs/b64-ckpt/checkpoints ]; then R="--resume runs/b64-ckpt"; else R="--name b64-ckpt"; fi
  deno task train $B64 --steps 200 --grad-checkpointing --time-limit 540 $R
  ;;
# Muon against AdamW: S/2 Fashion-MNIST, 1,500 steps, seed 0, the f16 proof's settings. ~4 min each
# (AdamW's ran on 2026-11-30: docs/results/muon-vs-adamw-adamw).
muon-adamw) deno task train $MUON --optimizer adamw --name muon-vs-adamw-adamw ;;
muon-muon) deno task train $MUON --optimizer muon --name muon-vs-adamw-muon ;;
muon-report)
  # AdamW's run is kept in docs/results (2026-11-30, bit-identical to the f16 proof run, whose
  # grid is fmnist_S_f16_grid_1500.png) when runs/ no longer has it.
  A=runs/muon-vs-adamw-adamw
  [ -f $A/metrics.jsonl ] || A=docs/results/muon-vs-adamw-adamw
  deno run -A scripts/loss_curves.ts $A runs/muon-vs-adamw-muon \
    --out docs/results/fmnist_S_muon_vs_adamw.png
  A=$A deno eval '
    const rows = (dir) => Deno.readTextFileSync(`${dir}/metrics.jsonl`).trim()
      .split("\n").map((l) => JSON.parse(l));
    const a = rows(Deno.env.get("A")), m = rows("runs/muon-vs-adamw-muon");
    // The first step whose smoothed loss is at or below the final AdamW one, for both runs (the
    // smoothed curve dips under its own final value before the end, for AdamW too).
    const target = a.at(-1).loss_smooth, first = (rs) => rs.find((r) => r.loss_smooth <= target);
    const hit = first(m);
    console.log(`AdamW final smoothed loss ${target.toFixed(5)} at step ${a.at(-1).step}, first ` +
      `reached at step ${first(a).step}; Muon ` +
      (hit ? `reaches it at step ${hit.step}` : "does not reach it") +
      ` (Muon final ${m.at(-1).loss_smooth.toFixed(5)})`);'
  cp runs/muon-vs-adamw-muon/samples/step_001500.png docs/results/fmnist_S_muon_grid_1500.png
  ;;
*) sed -n 2,8p "$0"; exit 2 ;;
esac
